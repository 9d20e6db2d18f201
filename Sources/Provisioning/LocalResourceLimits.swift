import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// CPU and memory limits for a local kernel, enforced by a cgroup of its own.
///
/// - cgroup v2 (a unified hierarchy: `cgroup.controllers` at the root listing `memory`/`cpu`):
///   `<root>/ganymede/<id>` with `memory.max` (and `memory.swap.max` 0, so the limit is not
///   dodged into swap) and `cpu.max` ("quota period"), after enabling the controllers for the
///   children (`cgroup.subtree_control`); OOM kills counted from `memory.events`.
/// - cgroup v1 (`<root>/{memory,cpu}`): `memory.limit_in_bytes` and the CFS quota
///   (`cpu.cfs_quota_us` / `cpu.cfs_period_us`); OOM kills from `memory.oom_control`.
/// - Neither writable (not root, or a container without delegation): rlimits (`ulimit -v`,
///   address space) and CPU affinity (`taskset`).
///
/// This machine kind has v1 hierarchies only (its v2 mount has no memory or cpu controller), so
/// v1 and the fallback are tested against the real kernel; v2 is tested against a directory
/// laid out as cgroupfs lays it out, not against a real v2 kernel.
///
/// The kernel enters its cgroup before it runs: its argv is wrapped in a `sh -c` that writes
/// its own pid into `cgroup.procs` and then `exec`s the kernel, so no child escapes.
public struct LocalResourceLimits: Sendable {
    public enum Mechanism: String, Sendable { case cgroupV2 = "cgroup v2", cgroupV1 = "cgroup v1", rlimit = "rlimit/affinity" }

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
        if let v2 = prepareV2(kernelID: kernelID, cpus: cpus, memoryBytes: memoryBytes, root: root) { return v2 }
        var dirs: [String] = []
        var memoryDir: String?
        var ok = FileManager.default.fileExists(atPath: "\(root)/\(memoryBytes != nil ? "memory" : "cpu")")
        if ok, let memoryBytes {
            let dir = "\(root)/memory/ganymede/\(kernelID)"
            ok = make(dir) && write("\(memoryBytes)", to: "\(dir)/memory.limit_in_bytes")
            dirs.append(dir)
            memoryDir = dir
        }
        if ok, let cpus {
            let dir = "\(root)/cpu/ganymede/\(kernelID)"
            ok = make(dir) && write("\(Self.cfsPeriod)", to: "\(dir)/cpu.cfs_period_us")
                && write("\(Self.cfsQuota(cpus: cpus))", to: "\(dir)/cpu.cfs_quota_us")
            dirs.append(dir)
        }
        if ok {
            return LocalResourceLimits(mechanism: .cgroupV1, cpus: cpus, memoryBytes: memoryBytes, directories: dirs,
                                       memoryDirectory: memoryDir)
        }
        for dir in dirs { rmdir(dir) }
        return LocalResourceLimits(mechanism: .rlimit, cpus: cpus, memoryBytes: memoryBytes, directories: [], memoryDirectory: nil)
    }

    /// The v2 layout, when `root` is a unified hierarchy offering the controllers needed.
    static func prepareV2(kernelID: String, cpus: Double?, memoryBytes: Int64?, root: String) -> LocalResourceLimits? {
        guard let available = try? String(contentsOfFile: "\(root)/cgroup.controllers", encoding: .utf8) else { return nil }
        let controllers = Set(available.split(whereSeparator: \.isWhitespace).map(String.init))
        var needed: [String] = []
        if memoryBytes != nil { needed.append("memory") }
        if cpus != nil { needed.append("cpu") }
        guard needed.allSatisfy(controllers.contains) else { return nil }
        let parent = "\(root)/ganymede"
        let dir = "\(parent)/\(kernelID)"
        let enable = needed.map { "+\($0)" }.joined(separator: " ")
        // Controllers reach a group only when every ancestor enables them for its children.
        guard write(enable, to: "\(root)/cgroup.subtree_control"), make(parent),
              write(enable, to: "\(parent)/cgroup.subtree_control"), make(dir) else {
            rmdir(dir)
            return nil
        }
        var ok = true
        if let memoryBytes {
            ok = write("\(memoryBytes)", to: "\(dir)/memory.max")
            _ = write("0", to: "\(dir)/memory.swap.max")  // absent when swap accounting is off
        }
        if ok, let cpus {
            ok = write("\(Self.cfsQuota(cpus: cpus)) \(Self.cfsPeriod)", to: "\(dir)/cpu.max")
        }
        guard ok else {
            rmdir(dir)
            return nil
        }
        return LocalResourceLimits(mechanism: .cgroupV2, cpus: cpus, memoryBytes: memoryBytes, directories: [dir],
                                   memoryDirectory: memoryBytes != nil ? dir : nil)
    }

    /// The kernel's argv, wrapped so the process is limited before the kernel starts.
    public func wrap(_ argv: [String]) -> [String] {
        var script = ""
        switch mechanism {
        case .cgroupV1, .cgroupV2:
            for dir in directories { script += "echo $$ > '\(dir)/cgroup.procs' || exit 97; " }
            script += "exec \"$@\""
            return ["/bin/sh", "-c", script, "ganymede-limits"] + argv
        case .rlimit:
            if let memoryBytes { script += "ulimit -v \(Self.addressSpaceKiB(memoryBytes)) || exit 97; " }
            let tasksets: [String] = ["/usr/bin/taskset", "/bin/taskset"]
            if let cpus, let taskset = tasksets.first(where: { path in access(path, X_OK) == 0 }) {
                script += "exec \(taskset) -c 0-\(Self.wholeCPUs(cpus) - 1) \"$@\""
            } else {
                script += "exec \"$@\""
            }
            return ["/bin/sh", "-c", script, "ganymede-limits"] + argv
        }
    }

    /// How many times the kernel's memory cgroup OOM-killed a process so far.
    public func oomKills() -> Int {
        guard let memoryDirectory else { return 0 }
        let file = mechanism == .cgroupV2 ? "memory.events" : "memory.oom_control"
        return (try? String(contentsOfFile: "\(memoryDirectory)/\(file)", encoding: .utf8)).map(Self.oomKillCount) ?? 0
    }

    /// The `oom_kill N` line of a memory cgroup's `memory.oom_control` (v1) or `memory.events` (v2).
    static func oomKillCount(in text: String) -> Int {
        for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }

    /// CFS quota in µs per 100 ms period for `cpus` (at least 1 ms, the kernel's minimum).
    static func cfsQuota(cpus: Double) -> Int { max(1000, Int(cpus * Double(cfsPeriod))) }
    static let cfsPeriod = 100_000
    /// `ulimit -v` takes KiB.
    static func addressSpaceKiB(_ bytes: Int64) -> Int64 { max(1, bytes / 1024) }
    /// Whole CPUs for affinity (`taskset -c 0-(n-1)`), rounded up.
    static func wholeCPUs(_ cpus: Double) -> Int { max(1, Int(cpus.rounded(.up))) }

    /// Removes the cgroups once the kernel process is gone.
    public func remove() {
        for dir in directories { rmdir(dir) }
    }

    private static func make(_ dir: String) -> Bool {
        (try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)) != nil
    }

    private static func write(_ value: String, to path: String) -> Bool {
        // O_CREAT is a no-op on cgroupfs control files (they exist once the group does) and lets
        // the layout be exercised in an ordinary directory.
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        return Glibc.write(fd, bytes, bytes.count) == bytes.count
    }
}
