import Foundation

/// Resource limits for a kernel on an SSH host, applied by the remote shell before the
/// launcher starts (the same mechanisms as `LocalResourceLimits`, written as shell):
///
/// - memory: its own cgroup v1 memory group (`memory.limit_in_bytes`) when the remote user can
///   create one under `/sys/fs/cgroup/memory/ganymede/`, else `ulimit -v` (address space);
/// - CPUs: its own cgroup v1 cpu group (CFS quota) when it can, else CPU affinity (`taskset -c
///   0-(n-1)`, whole CPUs rounded up) when taskset is there.
///
/// The shell enters the groups itself (`echo $$ > cgroup.procs`) and then `exec`s the launcher,
/// so the launcher and the kernel it starts are confined from their first instruction. A limit
/// that cannot be applied by any means makes the shell exit with 97 instead of starting an
/// unconfined kernel.
public enum RemoteResourceLimits {
    static let root = "/sys/fs/cgroup"

    /// Shell statements (each ending in `;`) that apply the limits and leave in `$t` the command
    /// prefix for CPU affinity (empty when a cgroup applies). Empty when there is nothing to limit.
    static func prelude(kernelID: String, resources: ResourceRequest?) -> String {
        guard let r = resources, r.cpus != nil || r.memoryBytes != nil else { return "" }
        var s = "t=; "
        if let bytes = r.memoryBytes {
            let dir = RemoteCommand.quote("\(root)/memory/ganymede/\(kernelID)")
            s += "if mkdir -p \(dir) 2>/dev/null && echo \(bytes) > \(dir)/memory.limit_in_bytes 2>/dev/null; "
                + "then echo $$ > \(dir)/cgroup.procs || exit 97; "
                + "else rmdir \(dir) 2>/dev/null; ulimit -v \(LocalResourceLimits.addressSpaceKiB(bytes)) || exit 97; fi; "
        }
        if let cpus = r.cpus {
            let dir = RemoteCommand.quote("\(root)/cpu/ganymede/\(kernelID)")
            s += "if mkdir -p \(dir) 2>/dev/null && echo \(LocalResourceLimits.cfsPeriod) > \(dir)/cpu.cfs_period_us 2>/dev/null "
                + "&& echo \(LocalResourceLimits.cfsQuota(cpus: cpus)) > \(dir)/cpu.cfs_quota_us 2>/dev/null; "
                + "then echo $$ > \(dir)/cgroup.procs || exit 97; "
                + "else rmdir \(dir) 2>/dev/null; if command -v taskset >/dev/null 2>&1; "
                + "then t=\"taskset -c 0-\(LocalResourceLimits.wholeCPUs(cpus) - 1)\"; fi; fi; "
        }
        return s
    }

    /// Removes the kernel's groups once its processes are gone (`rmdir` fails while any is left).
    static func cleanupCommand(kernelID: String) -> String {
        let dirs = ["memory", "cpu"].map { RemoteCommand.quote("\(root)/\($0)/ganymede/\(kernelID)") }
        return dirs.map { "rmdir \($0) 2>/dev/null" }.joined(separator: "; ") + "; true"
    }
}

/// What an SSH host offers kernels, as found over SSH (or given in the configuration).
public struct HostInventory: Sendable, Equatable {
    public var cpus: Double
    public var memoryBytes: Int64
    public var gpus: [GPUDevice]

    public init(cpus: Double, memoryBytes: Int64, gpus: [GPUDevice] = []) {
        self.cpus = cpus
        self.memoryBytes = memoryBytes
        self.gpus = gpus
    }

    /// One command for the host: online CPUs, MemTotal in KiB, then nvidia-smi's CSV if present.
    static let probeCommand = "nproc; awk '/^MemTotal:/ {print $2}' /proc/meminfo; "
        + "command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi \(GPUDevice.nvidiaSMIArguments.joined(separator: " ")); true"

    static func parse(_ output: String) -> HostInventory? {
        let lines = output.split(separator: "\n", maxSplits: 2).map { $0.trimmingCharacters(in: .whitespaces) }
        guard lines.count >= 2, let cpus = Double(lines[0]), cpus > 0, let kib = Int64(lines[1]), kib > 0 else { return nil }
        return HostInventory(cpus: cpus, memoryBytes: kib * 1024, gpus: lines.count > 2 ? GPUDevice.parse(lines[2]) : [])
    }
}

extension SSHHosts {
    /// The host's CPUs, memory and GPUs, asked over its control master.
    public func inventory(_ host: String) async throws -> HostInventory {
        let r = try await run(host, HostInventory.probeCommand, timeout: .seconds(15))
        guard r.succeeded, let inventory = HostInventory.parse(r.output) else {
            throw ProvisionerError("could not read the resources of SSH host \(host): \(r.output.prefix(200))")
        }
        return inventory
    }
}
