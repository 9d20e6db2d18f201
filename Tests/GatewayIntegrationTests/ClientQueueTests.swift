@testable import JupyterProtocol
@testable import KernelBridge
import Testing

/// The per-client output bound and the unwritten-message hand-back, without sockets.
@Suite struct ClientQueueTests {
    /// A message of exactly `size` raw bytes (header padded; the rest `{}`), named `id`.
    static func message(_ size: Int, id: String = "m") -> OutboundMessage {
        let base = #"{"msg_id":"\#(id)","msg_type":"stream","session":"s","pad":""}"#
        let header = Array(base.dropLast(2).utf8) + Array(repeating: UInt8(ascii: "x"), count: max(0, size - base.utf8.count - 6))
            + Array(#""}"#.utf8)
        let m = try! JupyterMessage(header: header, parentHeader: Array("{}".utf8), metadata: Array("{}".utf8), content: Array("{}".utf8))
        return OutboundMessage(channel: .iopub, message: m)
    }

    @Test func aReplayLargerThanTheBoundDoesNotCutTheClient() {
        let q = ClientQueue(limit: 1000)
        q.force(Self.message(10_000))            // replay on reconnect
        #expect(q.reserve(Self.message(600)))    // live output while the replay is still being written
        #expect(!q.reserve(Self.message(600)), "falling `limit` behind the live output still cuts")
        q.written()                              // the replay is written (in order, first)
        #expect(q.queued == 600)
        #expect(q.reserve(Self.message(400)))
        #expect(!q.reserve(Self.message(100)))
    }

    /// A client that keeps up holds no written message: the queue used to keep up to 256 of
    /// them (and their encodings) per client until a compaction, which the chaos run's heap
    /// counters showed as growth under load.
    @Test func writtenMessagesAreReleasedOnceTheQueueIsDrained() {
        let q = ClientQueue(limit: 1 << 20)
        weak var first: OutboundMessage?
        do {
            let m = Self.message(100, id: "first")
            first = m
            #expect(q.reserve(m))
            #expect(q.reserve(Self.message(100, id: "second")))
        }
        q.written()
        #expect(first == nil || q.queued == 100, "a written message may stay only while the queue is not drained")
        q.written()
        #expect(q.queued == 0)
        #expect(first == nil, "a drained queue keeps no written message alive")
    }

    @Test func oneLargeMessageGoesThroughAnEmptyQueue() {
        let q = ClientQueue(limit: 100)
        #expect(q.reserve(Self.message(1000)))
        #expect(!q.reserve(Self.message(100)))
        q.written()
        #expect(q.reserve(Self.message(100)))
    }

    @Test func whatWasNeverWrittenIsHandedBackInOrder() {
        let q = ClientQueue(limit: 1 << 20)
        for id in ["a", "b", "c", "d"] { #expect(q.reserve(Self.message(100, id: id))) }
        q.written()
        #expect(q.shouldWrite())
        q.stop()
        #expect(!q.shouldWrite())
        #expect(q.takeUnwritten().map(\.message.msgID) == ["b", "c", "d"])
        #expect(q.queued == 0 && q.takeUnwritten().isEmpty)
    }
}
