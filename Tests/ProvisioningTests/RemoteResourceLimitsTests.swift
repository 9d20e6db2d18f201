import Testing
@testable import Provisioning

@Suite struct RemoteResourceLimitsTests {
    @Test func inventoryFromTheProbeOutput() {
        let out = "8\n16318944\n0, GPU-aaaa, NVIDIA A100\n1, GPU-bbbb, NVIDIA A100\n"
        let inv = HostInventory.parse(out)
        #expect(inv?.cpus == 8)
        #expect(inv?.memoryBytes == Int64(16_318_944) * 1024)
        #expect(inv?.gpus.map(\.uuid) == ["GPU-aaaa", "GPU-bbbb"])
        #expect(HostInventory.parse("8\n") == nil)
        #expect(HostInventory.parse("bash: nproc: not found\n\n") == nil)
    }

    @Test func noPreludeWithoutLimits() {
        #expect(RemoteResourceLimits.prelude(kernelID: "k", resources: nil) == "")
        #expect(RemoteResourceLimits.prelude(kernelID: "k", resources: ResourceRequest(gpus: 1)) == "")
        let line = RemoteCommand.shellLine(argv: ["true"], environment: [], logDirectory: "/tmp", kernelID: "k")
        #expect(!line.contains("$t"))
    }

    @Test func preludeFallsBackToRlimitAndAffinity() {
        let p = RemoteResourceLimits.prelude(kernelID: "k-1", resources: ResourceRequest(cpus: 1.5, memoryBytes: 256 << 20))
        #expect(p.contains("echo 268435456 > /sys/fs/cgroup/memory/ganymede/k-1/memory.limit_in_bytes"))
        #expect(p.contains("ulimit -v 262144 || exit 97"))
        #expect(p.contains("echo 150000 > /sys/fs/cgroup/cpu/ganymede/k-1/cpu.cfs_quota_us"))
        #expect(p.contains("t=\"taskset -c 0-1\""))
        let line = RemoteCommand.shellLine(argv: ["true"], environment: [], logDirectory: "/tmp", kernelID: "k-1", limits: p)
        #expect(line.contains("{ t=; ") && line.contains("true; } && exec $t env"))
    }
}
