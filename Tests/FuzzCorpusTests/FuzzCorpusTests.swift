import Foundation
import FuzzTargets
import Testing

/// The committed seed corpus (Fuzz/corpus, written by Fuzz/make_seeds.py) and every crash input
/// the fuzzers ever found (Fuzz/corpus/*/regress-*) go through the fuzz targets on each test run,
/// so a fixed crash stays fixed without a fuzzing build.
@Suite("Fuzz corpus replay")
struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus").path

    static func inputs(_ kind: String) throws -> [[UInt8]] {
        let files = FuzzDriver.files(under: "\(corpus)/\(kind)")
        #expect(files.count >= 5, "the \(kind) seed corpus is missing (\(corpus))")
        return try files.map { [UInt8](try Data(contentsOf: URL(fileURLWithPath: $0))) }
    }

    @Test func webSocket() throws { for input in try Self.inputs("websocket") { FuzzTargets.webSocket(input) } }
    @Test func wire() throws { for input in try Self.inputs("wire") { FuzzTargets.wire(input) } }
    @Test func launcher() throws { for input in try Self.inputs("launcher") { FuzzTargets.launcher(input) } }
    @Test func restBody() throws { for input in try Self.inputs("rest-body") { FuzzTargets.restBody(input) } }
}
