@testable import KernelBridge
import Testing

/// The per-client output bound, without sockets.
@Suite struct ClientQueueTests {
    @Test func aReplayLargerThanTheBoundDoesNotCutTheClient() {
        let q = ClientQueue(limit: 100)
        q.force(1000)                    // replay on reconnect
        #expect(q.reserve(60))           // live output while the replay is still being written
        #expect(!q.reserve(60), "falling `limit` behind the live output still cuts")
        q.release(1000)                  // the replay is written (in order, first)
        #expect(q.queued == 60)
        #expect(q.reserve(40))
        #expect(!q.reserve(1))
    }

    @Test func oneLargeMessageGoesThroughAnEmptyQueue() {
        let q = ClientQueue(limit: 10)
        #expect(q.reserve(1000))
        #expect(!q.reserve(1))
        q.release(1000)
        #expect(q.reserve(5))
    }
}
