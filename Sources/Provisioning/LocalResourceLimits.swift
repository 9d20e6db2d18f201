import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// CPU and memory limits for a local kernel, enforced by a cgroup of its own.
///
/// This machine kind has cgroup v1 hierarchies only (`/sys/fs/cgroup/{memory,cpu}`; the v2
/// mount has no memory or cpu controller), so v1 is what is implemented and tested: memory by
/// `memory.limit_in_bytes` (the kernel OOM-kills the process beyond it), CPU by CFS quota
/// (`cpu.cfs_quota_us` / `cpu.cfs_period_us`). When the hierarchy is not writable (not root)
/// the limits fall back to rlimits (`ulimit -v`, address space) and CPU affinity (`taskset`).
///
/// The kernel enters its cgroup before it runs: its argv is wrapped in a `sh -c` that writes
/// its own pid into `cgroup.procs` and then `exec`s the kernel, so no child escapes.
public struct LocalResourceLimits: Sendable {
    public enum Mechanism: String, Sendable { case cgroupV1 = "cgroup v1", rlimit = "rlimit/affinity" }

    public let mechanism: Mechanism
    public let cpus: Double?
    public let memoryBytes: Int64?
    /// Per-controller directories (cgroup v1), e.g. /sys/fs/cgroup/memory/ganymede/<id>.
    public let directories: [String]
    private let memoryDirectory: String?

    public static let defaultRoot = "/sys/fs/cgroup"

    /// Creates the cgroups (or plans the fallback). Nil when there is nothing to limit.
    public static func prepare(kernelID: String, cpus: Double?, memoryBytes: Int64?,
                               root: String = defaultRoot) -> LocalResourceLimits? {
        guard cpus != nil || memoryBytes != nil else { return nil }
        var dirs: [String] = []
        var memoryDir: String?
        var ok = true
        if let memoryBytes {
            let dir = "\(root)/memory/ganymede/\(kernelID)"
            ok = ok && make(dir) && write("\(memoryBytes)", to: "\(dir)/memory.limit_in_bytes")
            dirs.append(dir)
            memoryDir = dir
        }
        if ok, let cpus {
            let dir = "\(root)/cpu/ganymede/\(kernelID)"
            let period = 100_000
            ok = make(dir) && write("\(period)", to: "\(dir)/cpu.cfs_period_us")
                && write("\(max(1000, Int(cpus * Double(period))))", to: "\(dir)/cpu.cfs_quota_us")
            dirs.append(dir)
        }
        if ok {
            return LocalResourceLimits(mechanism: .cgroupV1, cpus: cpus, memoryBytes: memoryBytes, directories: dirs,
                                       memoryDirectory: memoryDir)
        }
        for dir in dirs { rmdir(dir) }
        return LocalResourceLimits(mechanism: .rlimit, cpus: cpus, memoryBytes: memoryBytes, directories: [], memoryDirectory: nil)
    }

    /// The kernel's argv, wrapped so the process is limited before the kernel starts.
    public func wrap(_ argv: [String]) -> [String] {
        var script = ""
        switch mechanism {
        case .cgroupV1:
            for dir in directories { script += "echo $$ > '\(dir)/cgroup.procs' || exit 97; " }
            script += "exec \"$@\""
            return ["/bin/sh", "-c", script, "ganymede-limits"] + argv
        case .rlimit:
            if let memoryBytes { script += "ulimit -v \(max(1, memoryBytes / 1024)) || exit 97; " }
            let tasksets: [String] = ["/usr/bin/taskset", "/bin/taskset"]
            if let cpus, let taskset = tasksets.first(where: { path in access(path, X_OK) == 0 }) {
                let n = max(1, Int(cpus.rounded(.up)))
                script += "exec \(taskset) -c 0-\(n - 1) \"$@\""
            } else {
                script += "exec \"$@\""
            }
            return ["/bin/sh", "-c", script, "ganymede-limits"] + argv
        }
    }

    /// How many times the kernel's memory cgroup OOM-killed a process so far.
    public func oomKills() -> Int {
        guard let memoryDirectory,
              let text = try? String(contentsOfFile: "\(memoryDirectory)/memory.oom_control", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }

    /// Removes the cgroups once the kernel process is gone.
    public func remove() {
        for dir in directories { rmdir(dir) }
    }

    private static func make(_ dir: String) -> Bool {
        (try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)) != nil
    }

    private static func write(_ value: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        return Glibc.write(fd, bytes, bytes.count) == bytes.count
    }
}
