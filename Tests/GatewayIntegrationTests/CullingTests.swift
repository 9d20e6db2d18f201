import Foundation
@testable import GatewayServer
import JupyterProtocol
import Testing

/// Idle culling with jupyter_server's rule (idle beyond the timeout, and not busy unless
/// cull_busy, and not connected unless cull_connected), and the 404 that remembers why.
@Suite(.timeLimit(.minutes(3)))
struct CullingTests {
    static func fastCuller(_ c: inout GatewayConfiguration) {
        c.cullIdleTimeout = .seconds(1)
        c.cullInterval = .milliseconds(300)
    }

    static func waitUntilGone(_ gw: TestGateway, _ id: String, within: Duration = .seconds(15)) async throws -> TestGateway.HTTPResult {
        let deadline = ContinuousClock.now + within
        while ContinuousClock.now < deadline {
            let r = try await gw.request(.GET, "/api/kernels/\(id)")
            if r.status == 404 { return r }
            try await Task.sleep(for: .milliseconds(200))
        }
        return try await gw.request(.GET, "/api/kernels/\(id)")
    }

    @Test func idleKernelIsCulledAndItsIdSaysSo() async throws {
        try await TestGateway.with(configure: Self.fastCuller) { gw in
            let id = try await gw.startKernel()
            let gone = try await Self.waitUntilGone(gw, id)
            #expect(gone.status == 404)
            let message = gone.object["message"] as? String ?? ""
            #expect(message.contains("culled at"), "got: \(message)")
            #expect(message.contains("of inactivity"))
            #expect(await gw.gateway.registry.count == 0)
            let ws = try await gw.request(.GET, "/api/kernels/\(id)/channels")
            #expect(ws.status == 404 || ws.status == 400)
            #expect(try await gw.request(.DELETE, "/api/kernels/\(id)").status == 404)
        }
    }

    @Test func connectedKernelIsKeptUnlessCullConnected() async throws {
        // A 3 s timeout, not 1 s: the upgrade answers before the relay counts the client, and under
        // load (CI runs suites in parallel on 2 cores) start → counted took over a second, so a
        // 1 s culler could take the kernel as idle and unconnected before the client was counted.
        try await TestGateway.with(configure: { Self.fastCuller(&$0); $0.cullIdleTimeout = .seconds(3) }) { gw in
            let id = try await gw.startKernel()
            let client = ChannelsClient(proto: .v1)
            try await client.connect(gw, kernel: id)
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline,
                  try await gw.request(.GET, "/api/kernels/\(id)").object["connections"] as? Int != 1 {
                try await Task.sleep(for: .milliseconds(50))
            }
            // Longer than the timeout plus an interval: a culler that ignored connections would act.
            try await Task.sleep(for: .seconds(4))
            #expect(try await gw.request(.GET, "/api/kernels/\(id)").status == 200, "connected kernels are not culled by default")
            client.close()
            let gone = try await Self.waitUntilGone(gw, id)
            #expect(gone.status == 404, "culled once the last client left")
        }
        try await TestGateway.with(configure: { Self.fastCuller(&$0); $0.cullConnected = true }) { gw in
            let id = try await gw.startKernel()
            let client = ChannelsClient(proto: .v1)
            try await client.connect(gw, kernel: id)
            let dead = await client.waitForStatus(["dead"], timeout: .seconds(15))
            let reason = dead.flatMap { ChannelsClient.string($0.content, "reason") } ?? ""
            #expect(reason.contains("culled"), "connected clients are told why: \(reason)")
            #expect(try await Self.waitUntilGone(gw, id).status == 404)
            client.close()
        }
    }

    @Test func busyKernelIsKeptUnlessCullBusy() async throws {
        try await TestGateway.with(configure: {
            $0.cullIdleTimeout = .seconds(2)
            $0.cullInterval = .milliseconds(300)
            $0.cullConnected = true
        }) { gw in
            let id = try await gw.startKernel()
            let client = ChannelsClient(proto: .v1)
            try await client.connect(gw, kernel: id)
            // Busy and silent: no output, so last_activity stays old while the cell runs.
            let msg = client.execute("import time; time.sleep(8)")
            #expect(await client.waitForStatus(["busy"], timeout: .seconds(10)) != nil)
            try await Task.sleep(for: .seconds(4))
            #expect(try await gw.request(.GET, "/api/kernels/\(id)").status == 200, "busy kernels are not culled by default")
            _ = await client.collect(until: msg)
            client.close()
        }
        try await TestGateway.with(configure: { Self.fastCuller(&$0); $0.cullConnected = true; $0.cullBusy = true }) { gw in
            let id = try await gw.startKernel()
            let client = ChannelsClient(proto: .v1)
            try await client.connect(gw, kernel: id)
            _ = client.execute("import time; time.sleep(30)")
            #expect(try await Self.waitUntilGone(gw, id).status == 404, "cull_busy culls a busy kernel")
            client.close()
        }
    }

    @Test func kernelspecTimeoutWins() async throws {
        let dir = try TestGateway.makeKernelSpecDirectory(name: "shortlived", metadata: ["cull_idle_timeout": 1])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await TestGateway.with(configure: {
            $0.kernelSpecDirectories.append(dir)
            $0.cullInterval = .milliseconds(300)  // global timeout stays 0 (off)
        }) { gw in
            let keep = try await gw.startKernel()
            let short = try await gw.startKernel(name: "shortlived")
            #expect(try await Self.waitUntilGone(gw, short).status == 404)
            #expect(try await gw.request(.GET, "/api/kernels/\(keep)").status == 200)
        }
    }

    /// The remembered tombstones are bounded in time.
    @Test func culledIdsAreForgottenAfterTheMemoryPeriod() async throws {
        try await TestGateway.with(configure: { Self.fastCuller(&$0); $0.culledKernelMemory = .seconds(4) }) { gw in
            let id = try await gw.startKernel()
            let gone = try await Self.waitUntilGone(gw, id)
            #expect((gone.object["message"] as? String)?.contains("culled") == true)
            try await Task.sleep(for: .milliseconds(4200))
            let later = try await gw.request(.GET, "/api/kernels/\(id)")
            #expect(later.status == 404)
            #expect(later.object["message"] as? String == "Kernel does not exist: \(id)")
        }
    }
}
