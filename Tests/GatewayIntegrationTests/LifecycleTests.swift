import Foundation
@testable import GatewayServer
import JupyterProtocol
import Testing

/// Kernel death, automatic restart up to the limit, `dead` with a reason, and REST restarts
/// that keep the id and the WebSockets (jupyter_server#247).
@Suite(.timeLimit(.minutes(4)))
struct LifecycleTests {
    static let suicide = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"

    static func state(_ gw: TestGateway, _ id: String) async throws -> (String?, String?) {
        let r = try await gw.request(.GET, "/api/kernels/\(id)")
        return (r.object["execution_state"] as? String, r.object["reason"] as? String)
    }

    @Test func restartLimitEndsInDeadWithAReason() async throws {
        try await TestGateway.with(configure: { $0.restartLimit = 1 }) { gw in
            let id = try await gw.startKernel()
            let client = ChannelsClient(proto: .v1)
            try await client.connect(gw, kernel: id)

            client.execute(Self.suicide)
            let restarting = try #require(await client.waitForStatus(["restarting"]))
            // A status the gateway made: parent header empty, as jupyter_client's restarter sends.
            #expect(restarting.parentMsgID == nil)
            #expect(ChannelsClient.object(restarting.parentHeader).isEmpty)
            #expect(ChannelsClient.string(restarting.content, "reason")?.contains("signal") == true)
            #expect(await client.waitForStatus(["starting"]) != nil)
            let check = client.execute("print('alive')")
            #expect(ChannelsClient.output(await client.collect(until: check)).contains("alive"))

            client.execute(Self.suicide)
            let dead = try #require(await client.waitForStatus(["dead"]))
            #expect(ChannelsClient.string(dead.content, "reason")?.contains("SIGKILL") == true
                    || ChannelsClient.string(dead.content, "reason")?.contains("signal 9") == true)
            let (state, reason) = try await Self.state(gw, id)
            #expect(state == "dead")
            #expect(reason?.contains("restart limit") == true, "REST model carries the reason: \(reason ?? "nil")")

            // Deleting a dead kernel releases its WebSockets too.
            #expect(try await gw.request(.DELETE, "/api/kernels/\(id)").status == 204)
            var closed = false
            for _ in 0..<50 where !closed {
                _ = await client.next(timeout: .milliseconds(100))
                closed = await client.isClosed
            }
            #expect(closed, "the WebSocket of a deleted dead kernel is closed")
        }
    }

    @Test func autoRestartCanBeDisabledPerKernelspecAndGlobally() async throws {
        let dir = try TestGateway.makeKernelSpecDirectory(name: "norestart", metadata: ["auto_restart": false])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await TestGateway.with(configure: { $0.kernelSpecDirectories.append(dir) }) { gw in
            let id = try await gw.startKernel(name: "norestart")
            let client = ChannelsClient(proto: .legacy)
            try await client.connect(gw, kernel: id)
            client.execute(Self.suicide)
            let status = try #require(await client.waitForStatus(["restarting", "dead"]))
            #expect(ChannelsClient.string(status.content, "execution_state") == "dead")
            #expect(try await Self.state(gw, id).0 == "dead")
            client.close()

            // The global default still restarts python3 kernels.
            let other = try await gw.startKernel()
            let c2 = ChannelsClient(proto: .legacy)
            try await c2.connect(gw, kernel: other)
            c2.execute(Self.suicide)
            let s2 = try #require(await c2.waitForStatus(["restarting", "dead"]))
            #expect(ChannelsClient.string(s2.content, "execution_state") == "restarting")
            c2.close()
        }
        try await TestGateway.with(configure: { $0.autoRestart = false }) { gw in
            let id = try await gw.startKernel()
            let client = ChannelsClient(proto: .v1)
            try await client.connect(gw, kernel: id)
            client.execute(Self.suicide)
            let status = try #require(await client.waitForStatus(["restarting", "dead"]))
            #expect(ChannelsClient.string(status.content, "execution_state") == "dead")
            client.close()
        }
    }

    /// REST restart: `restarting` then `starting` on the open WebSocket, same id, and a request
    /// sent while the kernel is down is answered by the new kernel.
    @Test func restRestartKeepsSocketsAndAnswersRequestsSentDuringIt() async throws {
        try await TestGateway.with { gw in
            let id = try await gw.startKernel()
            let client = ChannelsClient(proto: .v1)
            try await client.connect(gw, kernel: id)
            let set = client.execute("x = 41")
            _ = await client.collect(until: set)

            async let restart = gw.request(.POST, "/api/kernels/\(id)/restart")
            #expect(await client.waitForStatus(["restarting"]) != nil)
            let during = client.execute("print(x if 'x' in dir() else 'fresh')")
            let response = try await restart
            #expect(response.status == 200)
            #expect(response.object["id"] as? String == id)
            let messages = await client.collect(until: during, timeout: .seconds(60))
            let states = messages.filter { $0.0 == .iopub && $0.1.msgType == "status" && $0.1.parentMsgID == nil }
                .compactMap { ChannelsClient.string($0.1.content, "execution_state") }
            #expect(states.contains("starting"), "the gateway says starting once the new kernel is up")
            #expect(ChannelsClient.output(messages).contains("fresh"), "answered by the new kernel")
            let reply = messages.first { $0.0 == .shell && $0.1.parentMsgID == during }
            #expect(reply != nil, "the request sent during the restart got its reply")
        }
    }

    /// A stopping gateway tells connected clients why their kernel goes away, then closes.
    @Test func gatewayShutdownIsAnnounced() async throws {
        try await TestGateway.with { gw in
            let id = try await gw.startKernel()
            let client = ChannelsClient(proto: .v1)
            try await client.connect(gw, kernel: id)
            // The upgrade answers before the relay registers the client: see it counted first.
            for _ in 0..<200 where (try await gw.request(.GET, "/api/kernels/\(id)")).object["connections"] as? Int != 1 {
                try await Task.sleep(for: .milliseconds(10))
            }
            async let drained: Void = gw.gateway.registry.shutdownAll()
            let dead = await client.waitForStatus(["dead"], timeout: .seconds(30))
            #expect(dead.flatMap { ChannelsClient.string($0.content, "reason") } == "the gateway is shutting down")
            await drained
            #expect(try await gw.request(.POST, "/api/kernels", body: "{}").status == 503, "no new starts while draining")
            client.close()
        }
    }
}
