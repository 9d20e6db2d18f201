import Foundation
@testable import GatewayServer
import Provisioning
import JupyterProtocol
import Testing

/// Resource profiles: parsing, admission, GPU assignment (fake nvidia-smi), and enforcement
/// by the kernel's cgroup with real kernels.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct ResourceTests {
    static let spec = KernelSpec(name: "p", file: try! JSONDecoder().decode(KernelSpec.File.self, from: Data(
        #"{"argv":["python3"],"display_name":"P","language":"python","metadata":{"resources":{"default_profile":"small","allowed_profiles":["small","gpu"]}}}"#.utf8)),
        resourceDirectory: URL(fileURLWithPath: "/"))

    @Test func quantities() throws {
        #expect(try Quantity.cpus("500m") == 0.5)
        #expect(try Quantity.cpus("2") == 2)
        #expect(try Quantity.bytes("256Mi") == 256 << 20)
        #expect(try Quantity.bytes("2Gi") == 2 << 30)
        #expect(try Quantity.bytes("1G") == 1_000_000_000)
        #expect(try Quantity.count("1") == 1)
        for bad in ["", "abc", "-1", "1.5.2", "2Xi", "1e3"] {
            #expect(throws: Quantity.Invalid.self) { _ = try Quantity.parse(bad) }
        }
        #expect(throws: Quantity.Invalid.self) { _ = try Quantity.bytes("10") }
        #expect(throws: Quantity.Invalid.self) { _ = try Quantity.count("1.5") }
    }

    @Test func policy() throws {
        let profiles = try ResourcePolicy.parseProfiles(["small": ["cpus": 1, "memory": "2Gi"], "gpu": ["cpus": 4, "memory": "16Gi", "gpus": 1],
                                                         "big": ["cpus": 8]])
        let p = ResourcePolicy(profiles: profiles)
        #expect(try p.request(env: nil, spec: Self.spec) == ResourceRequest(cpus: 1, memoryBytes: 2 << 30), "kernelspec default")
        #expect(try p.request(env: ["KERNEL_RESOURCE_PROFILE": "gpu"], spec: Self.spec).gpus == 1)
        #expect(try p.request(env: ["KERNEL_CPUS": "500m", "KERNEL_MEMORY": "1Gi", "KERNEL_MEMORY_LIMIT": "2Gi"], spec: Self.spec)
                == ResourceRequest(cpus: 0.5, memoryBytes: 2 << 30), "direct request; the _LIMIT form wins")
        #expect(throws: GatewayError.self) { _ = try p.request(env: ["KERNEL_RESOURCE_PROFILE": "huge"], spec: Self.spec) }
        do {
            _ = try p.request(env: ["KERNEL_RESOURCE_PROFILE": "big"], spec: Self.spec)
            Issue.record("a profile the kernelspec does not allow must be refused")
        } catch {
            #expect(error.status == .forbidden)
            #expect(error.message.contains("allowed: gpu, small"))
        }
        do {
            _ = try p.request(env: ["KERNEL_MEMORY": "lots"], spec: Self.spec)
            Issue.record("an invalid quantity must be refused")
        } catch {
            #expect(error.status == .badRequest)
        }
        let strict = ResourcePolicy(profiles: profiles, allowCustom: false)
        #expect(throws: GatewayError.self) { _ = try strict.request(env: ["KERNEL_CPUS": "1"], spec: Self.spec) }
    }

    static func fakeNvidiaSMI(gpus: Int) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ganymede-fakegpu-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var lines = ""
        for i in 0..<gpus { lines += "\(i), GPU-fake-\(i), Fake GPU \(i)\\n" }
        let script = "#!/bin/sh\n# fake nvidia-smi for tests: no GPU is attached to this machine\nprintf '\(lines)'\n"
        let path = dir.appendingPathComponent("nvidia-smi").path
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return dir.path
    }

    static func output(_ gw: TestGateway, _ id: String, _ code: String) async throws -> String {
        let client = ChannelsClient(proto: .v1)
        try await client.connect(gw, kernel: id)
        defer { client.close() }
        return ChannelsClient.output(await client.collect(until: client.execute(code)))
    }

    @Test func gpusAreAssignedExclusively() async throws {
        let dir = try Self.fakeNvidiaSMI(gpus: 2)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await TestGateway.with(pathPrefix: dir) { gw in
            #expect(gw.gateway.registry.ledger.capacity.gpus.map(\.uuid) == ["GPU-fake-0", "GPU-fake-1"])
            let a = try await gw.startKernel(env: ["KERNEL_GPUS": "1"])
            let b = try await gw.startKernel(env: ["KERNEL_GPUS": "1"])
            let none = try await gw.startKernel()
            let seenA = try await Self.output(gw, a, "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])")
            let seenB = try await Self.output(gw, b, "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])")
            #expect(Set([seenA.trimmingCharacters(in: .whitespacesAndNewlines), seenB.trimmingCharacters(in: .whitespacesAndNewlines)]) == ["0", "1"])
            let seenNone = try await Self.output(gw, none, "import os; print(repr(os.environ.get('CUDA_VISIBLE_DEVICES')))")
            #expect(seenNone.contains("''"), "a kernel that asked for no GPU sees none")
            let model = try await gw.request(.GET, "/api/kernels/\(a)").object
            #expect(((model["resources"] as? [String: Any])?["gpus"] as? [Int])?.count == 1)

            let third = try await gw.request(.POST, "/api/kernels", body: #"{"name":"python3","env":{"KERNEL_GPUS":"1"}}"#)
            #expect(third.status == 503)
            #expect((third.object["message"] as? String)?.contains("Not enough GPUs") == true)
            #expect(try await gw.request(.DELETE, "/api/kernels/\(a)").status == 204)
            _ = try await gw.startKernel(env: ["KERNEL_GPUS": "1"])
            let resources = try await gw.request(.GET, "/api/resources").object
            let host = try #require((resources["hosts"] as? [String: Any])?["localhost"] as? [String: Any])
            #expect(((host["in_use"] as? [String: Any])?["gpus"] as? Int) == 2)
        }
    }

    @Test func admissionRefusesWhatDoesNotFitAndAdmitsAfterADelete() async throws {
        try await TestGateway.with { gw in
            let cpus = gw.gateway.registry.ledger.capacity.cpus
            let half = String(cpus / 2)
            let one = try await gw.startKernel(env: ["KERNEL_CPUS": half])
            _ = try await gw.startKernel(env: ["KERNEL_CPUS": half])
            let refused = try await gw.request(.POST, "/api/kernels", body: #"{"name":"python3","env":{"KERNEL_CPUS":"\#(half)"}}"#)
            #expect(refused.status == 503)
            #expect(refused.object["reason"] as? String == "Insufficient resources")
            #expect(await gw.gateway.registry.count == 2, "nothing left behind by the refusal")
            #expect(try await gw.request(.DELETE, "/api/kernels/\(one)").status == 204)
            _ = try await gw.startKernel(env: ["KERNEL_CPUS": half])
            let bad = try await gw.request(.POST, "/api/kernels", body: #"{"name":"python3","env":{"KERNEL_MEMORY":"plenty"}}"#)
            #expect(bad.status == 400)
        }
    }

    /// Needs a writable cgroup v1 hierarchy (root on this machine kind, as in CI).
    @Test(.enabled(if: FileManager.default.isWritableFile(atPath: "/sys/fs/cgroup/memory")))
    func memoryLimitKillsAndClientsAreToldWhy() async throws {
        try await TestGateway.with(configure: { $0.restartLimit = 1 }) { gw in
            let id = try await gw.startKernel(env: ["KERNEL_MEMORY": "256Mi"])
            let limit = try String(contentsOfFile: "/sys/fs/cgroup/memory/ganymede/\(id)/memory.limit_in_bytes", encoding: .utf8)
            #expect(limit.trimmingCharacters(in: .whitespacesAndNewlines) == String(256 << 20))
            let client = ChannelsClient(proto: .v1)
            try await client.connect(gw, kernel: id)
            client.execute("x = bytearray(1 << 30); x[::4096] = b'\\x01' * len(x[::4096])")
            let status = try #require(await client.waitForStatus(["restarting", "dead"], timeout: .seconds(90)))
            #expect(ChannelsClient.string(status.content, "reason") == "out of memory (limit 256 MiB)")
            // Restarted inside the same limits, and working.
            #expect(await client.waitForStatus(["starting"]) != nil)
            let ok = ChannelsClient.output(await client.collect(until: client.execute("print('small is fine')")))
            #expect(ok.contains("small is fine"))
            client.close()
            #expect(try await gw.request(.DELETE, "/api/kernels/\(id)").status == 204)
            #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/ganymede/\(id)"), "cgroup removed")
        }
    }

    @Test(.enabled(if: FileManager.default.isWritableFile(atPath: "/sys/fs/cgroup/cpu")))
    func cpuQuotaConfinesTheKernel() async throws {
        try await TestGateway.with { gw in
            let one = try await gw.startKernel(env: ["KERNEL_CPUS": "1"])
            let quota = try String(contentsOfFile: "/sys/fs/cgroup/cpu/ganymede/\(one)/cpu.cfs_quota_us", encoding: .utf8)
            #expect(quota.trimmingCharacters(in: .whitespacesAndNewlines) == "100000", "1 CPU = one period of quota")
            // Enforcement, shown with a fifth of a CPU: on this shared 2-core machine two spinners
            // may get less than a whole CPU anyway, but never more than their quota.
            let id = try await gw.startKernel(env: ["KERNEL_CPUS": "200m"])
            let code = """
            import multiprocessing as mp, time, resource
            def spin(t):
                end = time.time() + t
                while time.time() < end: pass
            ps = [mp.Process(target=spin, args=(3,)) for _ in range(2)]
            start = time.time(); [p.start() for p in ps]; [p.join() for p in ps]; wall = time.time() - start
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            print('ratio %.2f' % ((ru.ru_utime + ru.ru_stime) / wall))
            """
            let out = try await Self.output(gw, id, code)
            let stat = try String(contentsOfFile: "/sys/fs/cgroup/cpu/ganymede/\(id)/cpu.stat", encoding: .utf8)
            let throttled = stat.split(separator: "\n").first { $0.hasPrefix("nr_throttled ") }.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
            #expect(throttled > 0, "two busy processes were throttled to their quota: \(stat) output: \(out)")
            let ratio = Double(out.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 9
            #expect(ratio <= 0.3, "CPU time per wall second \(ratio) with a 0.2 CPU quota")
        }
    }
}
