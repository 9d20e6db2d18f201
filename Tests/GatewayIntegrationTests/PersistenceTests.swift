import Foundation
@testable import GatewayServer
import JupyterProtocol
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Session persistence: a second gateway with the same persistence root takes over the first
/// one's kernels (same id, connection and state); kernels that died meanwhile are reported.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct PersistenceTests {
    static func root() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("ganymede-sessions-\(UUID().uuidString)").path
    }

    static func pid(_ gw: TestGateway, _ id: String) async throws -> Int32 {
        let kernel = try await gw.gateway.registry.kernel(id)
        let description = await kernel.provisioner.describe()
        return try #require(Int32(description.split(separator: " ").last ?? ""))
    }

    @Test func secondGatewayReattachesTheKernel() async throws {
        let root = Self.root()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let persist: (inout GatewayConfiguration) -> Void = { $0.sessionPersistence = true; $0.persistenceRoot = root }
        var id = ""
        var pid: Int32 = 0
        try await TestGateway.with(configure: persist) { gw in
            id = try await gw.startKernel(env: ["KERNEL_USERNAME": "dora"])
            pid = try await Self.pid(gw, id)
            let client = ChannelsClient(proto: .v1)
            try await client.connect(gw, kernel: id)
            _ = await client.collect(until: client.execute("x = 6 * 7"))
            client.close()
            let files = try FileManager.default.contentsOfDirectory(atPath: root)
            #expect(files == ["\(id).json"])
            let attrs = try FileManager.default.attributesOfItem(atPath: "\(root)/\(id).json")
            #expect((attrs[.posixPermissions] as? Int) == 0o600, "records hold the kernel key")
        }
        // The first gateway is gone; its kernel runs on.
        #expect(kill(pid, 0) == 0, "with persistence the kernel outlives its gateway")

        try await TestGateway.with(configure: { persist(&$0); $0.keepKernelsOnExit = false }) { gw in
            var model: [String: Any] = [:]
            for _ in 0..<100 {
                let r = try await gw.request(.GET, "/api/kernels/\(id)")
                if r.status == 200 { model = r.object; break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(model["id"] as? String == id, "re-attached under the same id")
            #expect(try await Self.pid(gw, id) == pid, "the same process, not a new one")
            let client = ChannelsClient(proto: .legacy)
            try await client.connect(gw, kernel: id)
            let out = ChannelsClient.output(await client.collect(until: client.execute("print(x)")))
            #expect(out.contains("42"), "state survived: \(out)")
            // Restart after re-attach relaunches under the same id with a working environment.
            #expect(try await gw.request(.POST, "/api/kernels/\(id)/restart").status == 200)
            let fresh = ChannelsClient.output(await client.collect(until: client.execute("print('x' in dir())")))
            #expect(fresh.contains("False"))
            client.close()
            #expect(try await gw.request(.DELETE, "/api/kernels/\(id)").status == 204)
            #expect((try? FileManager.default.contentsOfDirectory(atPath: root))?.isEmpty ?? true, "record removed on delete")
        }
        #expect(kill(pid, 0) != 0)
    }

    @Test func kernelThatDiedMeanwhileIsReported() async throws {
        let root = Self.root()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let persist: (inout GatewayConfiguration) -> Void = { $0.sessionPersistence = true; $0.persistenceRoot = root }
        var id = ""
        try await TestGateway.with(configure: persist) { gw in
            id = try await gw.startKernel()
            let pid = try await Self.pid(gw, id)
            // Detached at shutdown, then killed "while no gateway runs".
            await gw.gateway.registry.shutdownAll()
            kill(pid, SIGKILL)
            for _ in 0..<50 where kill(pid, 0) == 0 { try await Task.sleep(for: .milliseconds(100)) }
        }
        try await TestGateway.with(configure: { persist(&$0); $0.keepKernelsOnExit = false }) { gw in
            var r = try await gw.request(.GET, "/api/kernels/\(id)")
            for _ in 0..<50 where !(r.object["message"] as? String ?? "").contains("no gateway") {
                try await Task.sleep(for: .milliseconds(100))
                r = try await gw.request(.GET, "/api/kernels/\(id)")
            }
            #expect(r.status == 404)
            #expect((r.object["message"] as? String)?.contains("ended while no gateway was running") == true)
            #expect((try? FileManager.default.contentsOfDirectory(atPath: root))?.filter { $0.hasSuffix(".json") }.isEmpty ?? true)
        }
    }

    @Test func withoutPersistenceKernelsGetParentPID() {
        var c = GatewayConfiguration()
        let spec = KernelSpec(name: "p", file: try! JSONDecoder().decode(KernelSpec.File.self, from: Data(
            #"{"argv":["python3"],"display_name":"P","language":"python"}"#.utf8)), resourceDirectory: URL(fileURLWithPath: "/"))
        let plain = KernelEnvironment.build(clientEnv: nil, gatewayEnv: [:], configuration: c, spec: spec, kernelID: "k", username: "u")
        #expect(plain["JPY_PARENT_PID"] == String(getpid()))
        c.sessionPersistence = true
        let persisted = KernelEnvironment.build(clientEnv: nil, gatewayEnv: [:], configuration: c, spec: spec, kernelID: "k", username: "u")
        #expect(persisted["JPY_PARENT_PID"] == nil, "a persisted kernel must survive its gateway")
    }
}
