import Foundation
import Testing
@testable import Provisioning

/// cgroup v2 layout, exercised in a directory laid out as cgroupfs lays out a unified hierarchy
/// (no v2 memory/cpu controller exists on this machine kind; v1 is tested with real kernels in
/// the gateway's ResourceTests).
@Suite struct LocalResourceLimitsTests {
    private func fakeRoot(controllers: String) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ganymede-cg2-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try controllers.write(toFile: "\(root)/cgroup.controllers", atomically: true, encoding: .utf8)
        try "".write(toFile: "\(root)/cgroup.subtree_control", atomically: true, encoding: .utf8)
        return root
    }

    private func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    @Test func v2GroupWithMemoryAndCPU() throws {
        let root = try fakeRoot(controllers: "cpuset cpu io memory hugetlb pids rdma misc\n")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let limits = try #require(LocalResourceLimits.prepare(kernelID: "k1", cpus: 1.5, memoryBytes: 256 << 20, root: root))
        #expect(limits.mechanism == .cgroupV2)
        #expect(read("\(root)/cgroup.subtree_control") == "+memory +cpu")
        #expect(read("\(root)/ganymede/cgroup.subtree_control") == "+memory +cpu")
        #expect(read("\(root)/ganymede/k1/memory.max") == "268435456")
        #expect(read("\(root)/ganymede/k1/memory.swap.max") == "0")
        #expect(read("\(root)/ganymede/k1/cpu.max") == "150000 100000")
        let argv = limits.wrap(["python3", "-m", "ipykernel_launcher"])
        #expect(argv[2].contains("echo $$ > '\(root)/ganymede/k1/cgroup.procs'"))
        try "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n".write(toFile: "\(root)/ganymede/k1/memory.events", atomically: true, encoding: .utf8)
        #expect(limits.oomKills() == 1)
    }

    @Test func v2WithoutTheNeededControllerFallsBack() throws {
        let root = try fakeRoot(controllers: "cpuset io pids\n")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let limits = try #require(LocalResourceLimits.prepare(kernelID: "k2", cpus: nil, memoryBytes: 1 << 30, root: root))
        #expect(limits.mechanism == .rlimit)
        #expect(limits.wrap(["true"])[2].contains("ulimit -v 1048576"))
        #expect(!FileManager.default.fileExists(atPath: "\(root)/ganymede/k2"))
    }

    @Test func nothingToLimit() {
        #expect(LocalResourceLimits.prepare(kernelID: "k3", cpus: nil, memoryBytes: nil, root: "/nonexistent") == nil)
    }
}
