import Foundation
import JupyterProtocol
import Testing

// Fixtures are written by tests/fixtures/gen_codec_fixtures.py from jupyter_server's and
// jupyter_client's own serialisers. Regenerate with:
//     .venv/bin/python tests/fixtures/gen_codec_fixtures.py

enum Fixture {
    static func load<T: Decodable>(_ name: String, as type: T.Type = T.self) throws -> T {
        let url = try #require(
            Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"),
            "fixture \(name).json missing from the test bundle"
        )
        return try JSONDecoder().decode(T.self, from: Data(contentsOf: url))
    }
}

/// Base64 in a fixture, decoded to bytes.
struct B64: Decodable, Hashable, CustomStringConvertible {
    let bytes: [UInt8]

    init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let data = Data(base64Encoded: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad base64"))
        }
        bytes = Array(data)
    }

    var description: String { "\(bytes.count) bytes" }
}

struct V1Case: Decodable, CustomTestStringConvertible {
    let name: String
    let channel: String
    let parts: [B64]
    let frame: B64
    let msg_id: String
    let msg_type: String
    var testDescription: String { name }
}

struct LegacyBinaryCase: Decodable, CustomTestStringConvertible {
    let name: String
    let channel: String
    let msg_id: String
    let msg_type: String
    let json: B64
    let buffers: [B64]
    let frame: B64
    var testDescription: String { name }
}

struct LegacyTextCase: Decodable, CustomTestStringConvertible {
    let name: String
    let channel: String
    let msg_id: String
    let msg_type: String
    let parent_msg_id: String?
    let text: B64
    var testDescription: String { name }
}

struct WireFixture: Decodable {
    struct Case: Decodable, CustomTestStringConvertible {
        let name: String
        let key: String
        let identities: Int
        let frames: [B64]
        let msg_id: String
        let msg_type: String
        let buffer_count: Int
        var testDescription: String { name }
    }

    struct HMACVector: Decodable, CustomTestStringConvertible {
        let key: String
        let parts: [B64]
        let signature: String
        var testDescription: String { "key=\(key.prefix(12)) parts=\(parts.map(\.bytes.count))" }
    }

    let cases: [Case]
    let hmac: [HMACVector]
}

struct TemplateFixture: Decodable {
    struct Substitute: Decodable {
        let template: String
        let env: [String: String]
        let expected: String
    }

    struct FormatArgv: Decodable {
        let argv: [String]
        let values: [String: String]
        let expected: [String]
    }

    let substitute: [Substitute]
    let format_argv: [FormatArgv]
}

struct MiscFixture: Decodable {
    struct Stamp: Decodable {
        let epoch: Double
        let expected: String
    }

    struct JSONString: Decodable {
        let literal: B64
        let value: String
    }

    let timestamps: [Stamp]
    let connection_file: String
    let json_strings: [JSONString]
}

// Loaded once per process; the parameterised tests take their arguments from here.
enum Fixtures {
    static let v1: [V1Case] = (try? Fixture.load("ws_v1")) ?? []
    static let legacyBinary: [LegacyBinaryCase] = (try? Fixture.load("ws_legacy_binary")) ?? []
    static let legacyText: [LegacyTextCase] = (try? Fixture.load("ws_legacy_text")) ?? []
    static let wire: WireFixture = (try? Fixture.load("wire")) ?? WireFixture(cases: [], hmac: [])
    static let template: TemplateFixture? = try? Fixture.load("template")
    static let misc: MiscFixture? = try? Fixture.load("misc")
}

@Suite("Fixtures")
struct FixtureLoadingTests {
    /// Guards against the parameterised tests silently running over zero cases.
    @Test func fixturesLoadAndAreNonEmpty() throws {
        let v1: [V1Case] = try Fixture.load("ws_v1")
        let bin: [LegacyBinaryCase] = try Fixture.load("ws_legacy_binary")
        let text: [LegacyTextCase] = try Fixture.load("ws_legacy_text")
        let wire: WireFixture = try Fixture.load("wire")
        let template: TemplateFixture = try Fixture.load("template")
        let misc: MiscFixture = try Fixture.load("misc")
        #expect(v1.count >= 5)
        #expect(bin.count == v1.count)
        #expect(text.count >= 3)
        #expect(wire.cases.count >= 20)
        #expect(wire.hmac.count >= 10)
        #expect(template.substitute.count >= 10)
        #expect(!template.format_argv.isEmpty)
        #expect(!misc.timestamps.isEmpty)
        #expect(!misc.json_strings.isEmpty)
        // The fixtures cover 0, 1 and 3 buffers, one of them empty.
        let bufferCounts = Set(v1.map { $0.parts.count - 4 })
        #expect(bufferCounts.isSuperset(of: [0, 1, 3]))
        #expect(v1.contains { $0.parts.dropFirst(4).contains { $0.bytes.isEmpty } })
        #expect(Set(v1.map(\.channel)) == Set(Channel.allCases.map(\.rawValue)))
    }
}

// MARK: - Helpers

func utf8(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Parses JSON bytes with Foundation (an independent parser from `JSONScanner`).
func parseJSON(_ bytes: [UInt8]) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
}

func parseObject(_ bytes: [UInt8]) throws -> [String: Any] {
    try #require(try parseJSON(bytes) as? [String: Any], "not a JSON object: \(String(decoding: bytes, as: UTF8.self))")
}

/// A canonical serialisation of a parsed JSON value, to compare parsed objects.
func canonical(_ value: Any) throws -> String {
    let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed])
    return String(decoding: data, as: UTF8.self)
}

func sameJSON(_ a: [UInt8], _ b: [UInt8]) throws -> Bool {
    try canonical(try parseJSON(a)) == canonical(try parseJSON(b))
}

func sameJSON(_ a: Any, _ b: [UInt8]) throws -> Bool {
    try canonical(a) == canonical(try parseJSON(b))
}

func readBE32(_ b: [UInt8], _ at: Int) -> Int {
    Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3])
}

func readLE64(_ b: [UInt8], _ at: Int) -> UInt64 {
    (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) }
}

func be32(_ v: UInt32) -> [UInt8] {
    [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
}

func le64(_ v: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
}

extension JupyterMessage {
    /// header, parent_header, metadata, content, then the buffers.
    var allParts: [[UInt8]] { [header, parentHeader, metadata, content] + buffers }
}

/// A small valid message for hand-built frames.
enum Sample {
    static let header = utf8(#"{"msg_id":"m-1","msg_type":"execute_request","session":"s-1","username":"u","date":"2024-01-01T00:00:00.000000Z","version":"5.4"}"#)
    static let parent = utf8(#"{"msg_id":"p-1","msg_type":"kernel_info_request"}"#)
    static let metadata = utf8("{}")
    static let content = utf8(#"{"code":"1+1","silent":false}"#)
    static var parts: [[UInt8]] { [header, parent, metadata, content] }

    static func message(buffers: [[UInt8]] = []) throws -> JupyterMessage {
        try JupyterMessage(header: header, parentHeader: parent, metadata: metadata, content: content, buffers: buffers)
    }
}

/// Deterministic generator (SplitMix64) for the fuzz loops.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
