import Foundation
import JupyterProtocol
import Testing

/// Crafted frames must be rejected with a `ProtocolError`: never a trap, never a huge
/// allocation (jupyter_server's own parsers trust the offset tables).
@Suite("Hostile input")
struct HostileInputTests {
    static let json = WebSocketCodec.legacyJSON(try! Sample.message(), channel: .shell, withBuffers: false)

    static func legacy(_ header: [UInt32], tail: [UInt8] = json) -> [UInt8] {
        header.flatMap(be32) + tail
    }

    static func v1(_ header: [UInt64], tail: [UInt8]) -> [UInt8] {
        header.flatMap(le64) + tail
    }

    static func expectLegacyRejected(_ frame: [UInt8], _ comment: Comment, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: ProtocolError.self, comment, sourceLocation: sourceLocation) {
            try WebSocketCodec.splitLegacyBinary(frame)
        }
        #expect(throws: ProtocolError.self, comment, sourceLocation: sourceLocation) {
            try WebSocketCodec.decode(.binary(frame), protocol: .legacy)
        }
    }

    static func expectV1Rejected(_ frame: [UInt8], _ comment: Comment, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: ProtocolError.self, comment, sourceLocation: sourceLocation) {
            try WebSocketCodec.decodeV1(frame)
        }
        #expect(throws: ProtocolError.self, comment, sourceLocation: sourceLocation) {
            try WebSocketCodec.decode(.binary(frame), protocol: .v1)
        }
    }

    // MARK: Legacy binary

    @Test func legacyBaseline() throws {
        // The hand-built layout below is accepted when it is right.
        let json = Self.json
        let frame = Self.legacy([2, 12, UInt32(12 + json.count)], tail: json + [1, 2, 3])
        let (_, message) = try WebSocketCodec.decode(.binary(frame), protocol: .legacy)
        #expect(message.buffers == [[1, 2, 3]])
        #expect(frame == WebSocketCodec.frameLegacyBinary(json: json, buffers: [[1, 2, 3]]))
    }

    @Test func legacyShortFrames() {
        for length in 0..<8 {
            Self.expectLegacyRejected(Array(repeating: 0, count: length), "zero frame of \(length) bytes")
            Self.expectLegacyRejected(Array([0, 0, 0, 1, 0, 0, 0, 8].prefix(length)), "prefix of \(length) bytes")
        }
    }

    @Test func legacyCounts() {
        let n = UInt32(Self.json.count)
        Self.expectLegacyRejected(Self.legacy([0, 8]), "count 0")
        Self.expectLegacyRejected(Self.legacy([0]), "count 0, no table")
        Self.expectLegacyRejected(Self.legacy([0xFFFF_FFFF, 8]), "count 0xFFFFFFFF")
        Self.expectLegacyRejected(Self.legacy([0x8000_0000, 8]), "count 2^31 (negative for struct '!i')")
        Self.expectLegacyRejected(Self.legacy([0x7FFF_FFFF, 8]), "count 2^31-1")
        Self.expectLegacyRejected(Self.legacy([1000, 8]), "count larger than the frame")
        Self.expectLegacyRejected(Self.legacy([3, 16, 16 + n], tail: Self.json), "table claims 3 parts, has 2")
    }

    @Test func legacyOffsets() {
        let n = UInt32(Self.json.count)
        Self.expectLegacyRejected(Self.legacy([1, 0xFFFF_FFFF]), "offset 0xFFFFFFFF")
        Self.expectLegacyRejected(Self.legacy([1, 8 + n + 1]), "offset one past the end")
        Self.expectLegacyRejected(Self.legacy([2, 12, 12 + n + 1]), "second offset one past the end")
        Self.expectLegacyRejected(Self.legacy([2, 12, 0xFFFF_FFF0]), "second offset beyond the frame")
        Self.expectLegacyRejected(Self.legacy([2, 12 + n, 12], tail: Self.json), "decreasing offsets")
        Self.expectLegacyRejected(Self.legacy([3, 16, 16 + n, 16 + n - 1], tail: Self.json + [9]), "decreasing third offset")
        Self.expectLegacyRejected(Self.legacy([1, 0]), "first offset 0")
        Self.expectLegacyRejected(Self.legacy([1, 4]), "first offset inside the table")
        Self.expectLegacyRejected(Self.legacy([2, 8, 12 + n]), "first offset inside a two-entry table")
        // Well-formed tables whose JSON part is not a message: split succeeds, decode throws.
        for (frame, why) in [(Self.legacy([1, 8 + n], tail: Self.json), "JSON part empty"),
                             (Self.legacy([1, 9]), "JSON part cut at the front"),
                             (Self.legacy([2, 8 + 4, 8 + 4 + n - 1]), "JSON part cut at the back")] {
            #expect(throws: ProtocolError.self, "\(why)") { try WebSocketCodec.decode(.binary(frame), protocol: .legacy) }
        }
    }

    @Test func legacyOffsetAtTheEndIsAnEmptyBuffer() throws {
        // Offsets equal to the frame length are legal: trailing empty buffers.
        let n = UInt32(Self.json.count)
        let frame = Self.legacy([3, 16, 16 + n, 16 + n], tail: Self.json)
        let (_, message) = try WebSocketCodec.decode(.binary(frame), protocol: .legacy)
        #expect(message.buffers == [[], []])
    }

    // MARK: v1

    static let v1Channel = utf8("shell")

    static func v1Frame(parts: [[UInt8]] = Sample.parts) -> [UInt8] {
        WebSocketCodec.frameV1(channel: v1Channel, parts: parts)
    }

    @Test func v1Counts() {
        let valid = Self.v1Frame()
        let body = Array(valid[56...])
        for length in 0..<8 {
            Self.expectV1Rejected(Array(valid.prefix(length)), "frame of \(length) bytes")
        }
        Self.expectV1Rejected(le64(0), "n = 0, nothing else")
        Self.expectV1Rejected(Self.v1([0], tail: body), "n = 0")
        Self.expectV1Rejected(Self.v1([1, 16], tail: body), "n = 1")
        Self.expectV1Rejected(Self.v1([5, 48, 53, 100, 110, 120], tail: body), "n = 5 (a part missing)")
        Self.expectV1Rejected(Self.v1([1 << 63, 16], tail: body), "n = 2^63")
        Self.expectV1Rejected(Self.v1([UInt64.max, 16], tail: body), "n = 2^64-1")
        Self.expectV1Rejected(Self.v1([(1 << 61) + 6, 56], tail: body), "n*8 overflows")
        Self.expectV1Rejected(Self.v1([1000, 56], tail: body), "n larger than the frame")
        Self.expectV1Rejected(Array(valid.prefix(8 + 8 * 6)), "table cut short")
    }

    @Test func v1Offsets() {
        let valid = Self.v1Frame()
        let offsets = (0..<7).map { readLE64(valid, 8 * $0) }  // n, o0...o5
        let body = Array(valid[56...])
        func with(_ i: Int, _ value: UInt64) -> [UInt8] {
            var o = offsets
            o[i] = value
            return Self.v1(o, tail: body)
        }
        Self.expectV1Rejected(with(6, UInt64(valid.count) + 1), "last offset one past the end")
        Self.expectV1Rejected(with(6, UInt64.max), "last offset 2^64-1")
        Self.expectV1Rejected(with(3, 1 << 63), "middle offset 2^63")
        Self.expectV1Rejected(with(1, UInt64.max), "first offset 2^64-1")
        Self.expectV1Rejected(with(1, 0), "first offset 0")
        Self.expectV1Rejected(with(1, 48), "first offset inside the table")
        Self.expectV1Rejected(with(2, offsets[1] - 1), "channel end before its start")
        Self.expectV1Rejected(with(4, offsets[3] - 1), "decreasing offsets")
        Self.expectV1Rejected(with(5, offsets[6] + 1), "offsets out of order at the end")
        Self.expectV1Rejected(with(6, offsets[5] - 1), "last offset before the previous one")
    }

    @Test(arguments: ["hb", "", "Shell", "shell\u{0}", "ïopub", "control "])
    func v1UnknownChannel(_ name: String) {
        let frame = WebSocketCodec.frameV1(channel: utf8(name), parts: Sample.parts)
        #expect(throws: ProtocolError.unknownChannel(name)) { try WebSocketCodec.decodeV1(frame) }
    }

    @Test func v1InvalidUTF8Channel() {
        let frame = WebSocketCodec.frameV1(channel: [0xFF, 0xFE, 0x73], parts: Sample.parts)
        Self.expectV1Rejected(frame, "channel name not UTF-8")
    }

    @Test func v1BadParts() {
        Self.expectV1Rejected(Self.v1Frame(parts: [[], [], [], []]), "empty parts")
        Self.expectV1Rejected(Self.v1Frame(parts: [utf8("{}")] + Sample.parts.dropFirst()), "header without msg_id")
        Self.expectV1Rejected(Self.v1Frame(parts: [Sample.header, utf8("null"), Sample.metadata, Sample.content]),
                              "null parent in v1")
        Self.expectV1Rejected(Self.v1Frame(parts: [Sample.header, Sample.parent, Sample.metadata, utf8("{")]),
                              "truncated content")
        Self.expectV1Rejected(Self.v1Frame(parts: [Sample.header, Sample.parent, Sample.metadata,
                                                  Array(repeating: UInt8(ascii: "["), count: 10_000)]),
                              "10,000 nested arrays in content")
    }

    @Test func v1TrailingBytesAfterTheLastOffsetAreIgnored() throws {
        // As jupyter_server's deserialize_msg_from_ws_v1 (it slices up to the last offset).
        let frame = Self.v1Frame() + [1, 2, 3]
        let (channel, message) = try WebSocketCodec.decodeV1(frame)
        #expect(channel == .shell)
        #expect(message.allParts == Sample.parts)
    }

    /// JSON is UTF-8 (RFC 8259 §8.1). jupyter_server's `deserialize_binary_message` fails on
    /// a non-UTF-8 JSON blob (`bufs[0].decode("utf8")`), and a kernel's `Session.unpack`
    /// fails on non-UTF-8 parts. `JSONScanner` documents that binary parts are checked by
    /// a `validateUTF8` step, but none exists in JupyterProtocol, so these frames decode
    /// and would be relayed to the kernel.
    @Test func invalidUTF8InBinaryFramesIsRejected() {
        let badContent = utf8(#"{"code":""#) + [0xFF, 0xC3, 0x28, 0xED, 0xA0, 0x80] + utf8(#""}"#)
        let badHeader = utf8(#"{"msg_id":"a"#) + [0xC0, 0xAF] + utf8(#"","msg_type":"t"}"#)
        let legacyJSON = utf8(#"{"header":{"msg_id":"a","msg_type":"t"},"content":"#) + badContent + utf8("}")
        let frames: [(WebSocketPayload, WebSocketProtocol, String)] = [
            (.binary(WebSocketCodec.frameLegacyBinary(json: legacyJSON, buffers: [[0xFF]])), .legacy, "legacy content"),
            (.binary(WebSocketCodec.frameV1(channel: utf8("shell"), parts: [Sample.header, Sample.parent, Sample.metadata, badContent])),
             .v1, "v1 content"),
            (.binary(WebSocketCodec.frameV1(channel: utf8("shell"), parts: [badHeader, Sample.parent, Sample.metadata, Sample.content])),
             .v1, "v1 header"),
        ]
        for (payload, proto, why) in frames {
            #expect(throws: ProtocolError.self, "\(why)") { try WebSocketCodec.decode(payload, protocol: proto) }
        }
    }

    // MARK: JSON

    static let deepArrays = Array(repeating: UInt8(ascii: "["), count: 10_000)
    static let deepObjects = Array(String(repeating: #"{"a":"#, count: 10_000).utf8)

    @Test func deepNesting() {
        for deep in [Self.deepArrays, Self.deepArrays + Array(repeating: UInt8(ascii: "]"), count: 10_000), Self.deepObjects] {
            #expect(throws: JSONScanner.Failure.self) { try JSONScanner.validate(deep) }
            let inObject = utf8(#"{"x":"#) + deep + utf8("}")
            #expect(throws: JSONScanner.Failure.self) { try JSONScanner.topLevelMembers(of: inObject) }
            let text = utf8(#"{"header":{"msg_id":"a","msg_type":"t"},"content":"#) + deep + utf8("}")
            #expect(throws: ProtocolError.self) { try WebSocketCodec.decode(.text(text), protocol: .legacy) }
            let header = utf8(#"{"msg_id":"a","msg_type":"t","x":"#) + deep + utf8("}")
            #expect(throws: ProtocolError.self) {
                try JupyterMessage(header: header, parentHeader: utf8("{}"), metadata: utf8("{}"), content: utf8("{}"))
            }
        }
        let balanced = Self.deepArrays + Array(repeating: UInt8(ascii: "]"), count: 10_000)
        #expect(throws: JSONScanner.Failure.nestingTooDeep) { try JSONScanner.validate(balanced) }
    }

    @Test func moderateNestingIsAccepted() throws {
        let depth = min(200, JSONScanner.maxDepth)
        let nested = Array(repeating: UInt8(ascii: "["), count: depth) + Array(repeating: UInt8(ascii: "]"), count: depth)
        try JSONScanner.validate(nested)
        let content = utf8(#"{"x":"#) + nested + utf8("}")
        let message = try JupyterMessage(header: Sample.header, parentHeader: utf8("{}"), metadata: utf8("{}"), content: content)
        #expect(message.content == content)
    }

    static let invalidJSON: [String] = [
        // truncated
        "", " ", "{", #"{"a""#, #"{"a":"#, #"{"a":"abc"#, #"{"a":"abc\"#, #"{"a":1"#, #"{"a":[1,2"#, #"{"a":tru"#,
        #"{"a":"\u12"#, #"{"a":"\u12"}"#,
        // invalid escapes
        #"{"a":"\x41"}"#, #"{"a":"\u12G4"}"#, #"{"a":"\U0041"}"#, #"{"a":"\'"}"#, #"{"a":"\0"}"#, #"{"a":"\ "}"#,
        // raw control characters in strings
        "{\"a\":\"line\nbreak\"}", "{\"a\":\"tab\there\"}", "{\"a\":\"nul\u{0}\"}", "{\"a\":\"\u{1F}\"}",
        "{\"k\u{1}\":1}",
        // trailing garbage
        "{} x", "{}{}", "{},", #"{"a":1}}"#, #"{"a":1} {"#, "{}\u{0}",
        // structure
        "{,}", #"{"a":1,}"#, #"{"a" 1}"#, #"{"a":1 "b":2}"#, #"{a:1}"#, "{'a':1}", #"{"a":[1,]}"#, #"{"a":[,1]}"#,
        #"{1:2}"#, #"{"a":}"#,
        // numbers and literals
        #"{"a":01}"#, #"{"a":1.}"#, #"{"a":.5}"#, #"{"a":-}"#, #"{"a":1e}"#, #"{"a":1e+}"#, #"{"a":+1}"#,
        #"{"a":NaN}"#, #"{"a":Infinity}"#, #"{"a":0x10}"#, #"{"a":True}"#, #"{"a":nul}"#, #"{"a":nulll}"#,
        // non-object top level
        "[]", "[{}]", #""s""#, "1", "-0.5", "null", "true", "false",
    ]

    @Test(arguments: invalidJSON)
    func invalidJSONIsRejected(_ text: String) {
        let bytes = utf8(text)
        #expect(throws: JSONScanner.Failure.self) { try JSONScanner.topLevelMembers(of: bytes) }
        #expect(throws: ProtocolError.self) { try WebSocketCodec.decode(.text(bytes), protocol: .legacy) }
        #expect(throws: ProtocolError.self) {
            try JupyterMessage(header: bytes, parentHeader: utf8("{}"), metadata: utf8("{}"), content: utf8("{}"))
        }
        #expect(throws: ProtocolError.self) {
            try JupyterMessage(header: Sample.header, parentHeader: utf8("{}"), metadata: utf8("{}"), content: bytes)
                .validatedAsObject()
        }
    }

    static let validJSON: [String] = [
        "{}", " {\n}\t", #"{"a":1}"#, #"{"a":-0.5e+10,"b":1E-3,"c":0,"d":-0}"#, #"{"a":[true,false,null,[],{}]}"#,
        #"{"a":"\"\\\/\b\f\n\r\t\u0041\uD83D\uDE00"}"#, "{\"ü\":\"😀\"}", #"{"a":{"b":{"c":[1,[2,[3]]]}}}"#,
        #"{"":""}"#, #"{"a":1,"a":2}"#,
    ]

    @Test(arguments: validJSON)
    func validJSONIsAccepted(_ text: String) throws {
        let bytes = utf8(text)
        let members = try JSONScanner.topLevelMembers(of: bytes)
        try JSONScanner.validate(bytes)
        // Member ranges slice out exactly the values Foundation sees.
        let object = try parseObject(bytes)
        for member in members where object.count == members.count {
            let value = Array(bytes[member.value])
            try JSONScanner.validate(value)
            #expect(try canonical(try #require(object[member.key])) == canonical(try parseJSON(value)))
        }
    }

    // MARK: Fuzz

    /// Random bytes and random mutations of valid frames: every decoder either returns
    /// or throws. A successful decode must also survive a re-encode/decode round trip.
    @Test func fuzzDecoders() throws {
        var rng = SplitMix64(seed: 0x6A75_7079_7465_7221)
        let seeds = try Self.seedMessages()
        let keyed = MessageSigner(key: "fuzz-key")
        let unkeyed = MessageSigner(key: "")
        let v1Frames = seeds.map { WebSocketCodec.encodeV1($0, channel: .shell) }
        let legacyBinary = seeds.map { WebSocketCodec.encodeLegacyBinary($0, channel: .iopub) }
        let legacyText = seeds.map { WebSocketCodec.legacyJSON($0, channel: .control, withBuffers: true) }
        let wireKeyed = seeds.map { WireCodec.encode($0, signer: keyed) }
        let wireUnkeyed = seeds.map { WireCodec.encode($0, signer: unkeyed) }

        var accepted = 0
        var rejected = 0
        func run(_ body: () throws -> Void) {
            do {
                try body()
                accepted += 1
            } catch {
                rejected += 1
            }
        }

        for iteration in 0..<20_000 {
            switch iteration % 8 {
            case 0:
                let bytes = Self.randomBytes(&rng, maxCount: 96)
                run { try Self.checkWebSocket(.binary(bytes), .v1) }
                run { try Self.checkWebSocket(.binary(bytes), .legacy) }
                run { try Self.checkWebSocket(.text(bytes), .legacy) }
            case 1:
                // Random table headers in front of a valid body.
                var frame = v1Frames.randomElement(using: &rng)!
                let slot = Int.random(in: 0..<min(8, frame.count / 8), using: &rng)
                let value: UInt64 = [0, 1, 5, 6, 7, UInt64(frame.count), UInt64(frame.count) + 1, UInt64.max,
                                     1 << 63, UInt64.random(in: 0...UInt64(frame.count), using: &rng)]
                    .randomElement(using: &rng)!
                frame.replaceSubrange((slot * 8)..<(slot * 8 + 8), with: le64(value))
                run { try Self.checkWebSocket(.binary(frame), .v1) }
            case 2:
                let frame = Self.mutate(v1Frames.randomElement(using: &rng)!, &rng)
                run { try Self.checkWebSocket(.binary(frame), .v1) }
            case 3:
                var frame = legacyBinary.randomElement(using: &rng)!
                let slot = Int.random(in: 0..<min(4, frame.count / 4), using: &rng)
                let value: UInt32 = [0, 1, 2, 4, 8, UInt32(frame.count), UInt32(frame.count) + 1, UInt32.max,
                                     1 << 31, UInt32.random(in: 0...UInt32(frame.count), using: &rng)]
                    .randomElement(using: &rng)!
                frame.replaceSubrange((slot * 4)..<(slot * 4 + 4), with: be32(value))
                run { try Self.checkWebSocket(.binary(frame), .legacy) }
            case 4:
                let frame = Self.mutate(legacyBinary.randomElement(using: &rng)!, &rng)
                run { try Self.checkWebSocket(.binary(frame), .legacy) }
            case 5:
                let text = Self.mutate(legacyText.randomElement(using: &rng)!, &rng)
                run { try Self.checkWebSocket(.text(text), .legacy) }
            case 6:
                let frames = Self.mutateFrames(wireUnkeyed.randomElement(using: &rng)!, &rng)
                run { _ = try WireCodec.decode(frames, signer: unkeyed) }
            default:
                let frames = Self.mutateFrames(wireKeyed.randomElement(using: &rng)!, &rng)
                run { _ = try WireCodec.decode(frames, signer: keyed) }
                let bytes = Self.randomBytes(&rng, maxCount: 24)
                run { _ = try WireCodec.decode([bytes, WireCodec.delimiter, bytes, bytes, bytes, bytes, bytes], signer: keyed) }
            }
        }
        // The loop must exercise both outcomes (a generator that only produced garbage
        // would test nothing about accepted input).
        #expect(accepted > 500)
        #expect(rejected > 5_000)
    }

    static func checkWebSocket(_ payload: WebSocketPayload, _ proto: WebSocketProtocol) throws(ProtocolError) {
        let (channel, message) = try WebSocketCodec.decode(payload, protocol: proto)
        let reencoded = WebSocketCodec.encode(message, channel: channel, protocol: proto)
        let again: (Channel, JupyterMessage)
        do {
            again = try WebSocketCodec.decode(reencoded, protocol: proto)
        } catch {
            Issue.record("re-encoded message does not decode: \(error) (payload \(payload))")
            return
        }
        #expect(again.0 == channel)
        #expect(again.1 == message)
    }

    static func seedMessages() throws -> [JupyterMessage] {
        var seeds = [try Sample.message(), try Sample.message(buffers: [[], [0, 1, 2], utf8("buffer")])]
        for c in Fixtures.v1 {
            let p = c.parts.map(\.bytes)
            seeds.append(try JupyterMessage(header: p[0], parentHeader: p[1], metadata: p[2], content: p[3],
                                            buffers: Array(p[4...])))
        }
        return seeds
    }

    static func randomBytes(_ rng: inout SplitMix64, maxCount: Int) -> [UInt8] {
        (0..<Int.random(in: 0...maxCount, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    static let interesting: [UInt8] = Array(#"{}[]":,\"0-eE.tfnu "#.utf8) + [0x00, 0x1F, 0x7F, 0x80, 0xC3, 0xFF, 0x0A]

    static func mutate(_ input: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            switch Int.random(in: 0..<7, using: &rng) {
            case 0 where !bytes.isEmpty:
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            case 1 where !bytes.isEmpty:
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = interesting.randomElement(using: &rng)!
            case 2 where !bytes.isEmpty:
                bytes.remove(at: Int.random(in: 0..<bytes.count, using: &rng))
            case 3:
                bytes.insert(interesting.randomElement(using: &rng)!, at: Int.random(in: 0...bytes.count, using: &rng))
            case 4:
                bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng)))
            case 5 where !bytes.isEmpty:
                let start = Int.random(in: 0..<bytes.count, using: &rng)
                let end = min(bytes.count, start + Int.random(in: 1...16, using: &rng))
                bytes.insert(contentsOf: bytes[start..<end], at: Int.random(in: 0...bytes.count, using: &rng))
            default:
                bytes.append(contentsOf: randomBytes(&rng, maxCount: 4))
            }
        }
        return bytes
    }

    static func mutateFrames(_ input: [[UInt8]], _ rng: inout SplitMix64) -> [[UInt8]] {
        var frames = input
        switch Int.random(in: 0..<6, using: &rng) {
        case 0:
            let i = Int.random(in: 0..<frames.count, using: &rng)
            frames[i] = mutate(frames[i], &rng)
        case 1:
            frames.remove(at: Int.random(in: 0..<frames.count, using: &rng))
        case 2:
            frames.insert(randomBytes(&rng, maxCount: 12), at: Int.random(in: 0...frames.count, using: &rng))
        case 3:
            frames = Array(frames.prefix(Int.random(in: 0...frames.count, using: &rng)))
        case 4:
            frames.swapAt(Int.random(in: 0..<frames.count, using: &rng), Int.random(in: 0..<frames.count, using: &rng))
        default:
            frames.insert(WireCodec.delimiter, at: Int.random(in: 0...frames.count, using: &rng))
        }
        return frames
    }
}

private extension JupyterMessage {
    /// `JupyterMessage` accepts any JSON value as content (jupyter_client does too on the
    /// wire); the WebSocket codecs require an object. This helper adds the object check.
    func validatedAsObject() throws(ProtocolError) -> JupyterMessage {
        guard content.first == UInt8(ascii: "{") else { throw .invalidJSON(part: "content") }
        return self
    }
}
