import Foundation
import JupyterProtocol
import Testing

/// Messages for a session whose WebSockets are all closed are kept and replayed, in order,
/// when the same session_id reconnects; overflow drops the oldest and says so.
@Suite(.timeLimit(.minutes(2)))
struct ReplayTests {
    @Test func replayInOrderWithOverflowNote() async throws {
        try await TestGateway.with(configure: { $0.replayBufferMessages = 8 }) { gw in
            let id = try await gw.startKernel()
            let session = UUID().uuidString
            let away = ChannelsClient(proto: .legacy, session: session)
            try await away.connect(gw, kernel: id)
            _ = await away.collect(until: away.execute("1"))
            away.close()
            try await Task.sleep(for: .milliseconds(300))

            // Another client runs a cell that prints 30 lines while `away` is gone.
            let other = ChannelsClient(proto: .legacy)
            try await other.connect(gw, kernel: id)
            _ = await other.collect(until: other.execute("for i in range(30): print('line', i, flush=True)"))
            other.close()

            let back = ChannelsClient(proto: .v1, session: session)
            try await back.connect(gw, kernel: id)
            var replayed: [(JupyterProtocol.Channel, JupyterMessage)] = []
            while let m = await back.next(timeout: .seconds(2)) { replayed.append(m) }
            back.close()
            let first = try #require(replayed.first)
            #expect(first.1.msgType == "stream")
            #expect((ChannelsClient.object(first.1.content)["text"] as? String)?.contains("dropped") == true)
            let lines = ChannelsClient.output(Array(replayed.dropFirst()))
            #expect(lines.contains("line 29"), "the newest output is kept")
            #expect(!lines.contains("line 0\n"), "the oldest output was dropped")
            #expect(replayed.count <= 9)

            // A different session gets nothing replayed.
            let stranger = ChannelsClient(proto: .legacy)
            try await stranger.connect(gw, kernel: id)
            #expect(await stranger.next(timeout: .seconds(1)) == nil)
            stranger.close()
        }
    }
}
