import Foundation
import NIOCore
import NIOPosix

/// One readiness check of a remote backend, for `GET /api/health/ready`.
public struct BackendCheck: Sendable, Equatable {
    public var name: String
    public var ok: Bool
    public var detail: String
    /// Whether the verdict depends on it. One SSH host down does not make the gateway unready
    /// while another can take kernels: hosts are shown one by one, and `ssh` says whether any answers.
    public var required = true
}

extension RemoteServices {
    /// Readiness of what remote kernelspecs need (issue #10: "response listener bound, backends
    /// reachable"): the launcher response listener is bound (binding it now if no remote kernel
    /// started yet, so a taken port shows before the first user meets it); each SSH host accepts
    /// TCP on its SSH port within a second; the Slurm controller answers `squeue`.
    public func readiness(sshHosts: [String], slurm: Bool) async -> [BackendCheck] {
        var checks: [BackendCheck] = []
        do {
            let listener = try await listener()
            checks.append(BackendCheck(name: "response_listener", ok: true, detail: "bound on \(listener.address)"))
        } catch {
            checks.append(BackendCheck(name: "response_listener", ok: false, detail: "\(error)"))
        }
        let port = configuration.sshPort
        await withTaskGroup(of: BackendCheck.self) { group in
            for host in sshHosts {
                group.addTask {
                    let reached = await Self.accepts(host: host, port: port, within: .seconds(1))
                    return BackendCheck(name: "ssh:\(host)", ok: reached == nil,
                                        detail: reached.map { "\(host):\(port) \($0)" } ?? "\(host):\(port) accepts connections")
                }
            }
            if slurm, let missing = Self.missingSlurmConfiguration(ProcessInfo.processInfo.environment) {
                checks.append(BackendCheck(name: "slurm", ok: false, detail: missing))
            } else if slurm {
                let squeue = configuration.squeue
                group.addTask {
                    // Any query needs the controller; BOOT_FAIL jobs keep the answer short.
                    let r = try? await ShortCommand.run([squeue, "-h", "-o", "%i", "-t", "BOOT_FAIL"], timeout: .seconds(3))
                    let ok = r?.succeeded ?? false
                    let detail = ok ? "slurmctld answers" : (r?.output.trimmingCharacters(in: .whitespacesAndNewlines)).map { $0.isEmpty ? "squeue failed" : $0 } ?? "squeue did not answer within 3 s"
                    return BackendCheck(name: "slurm", ok: ok, detail: detail)
                }
            }
            for await check in group { checks.append(check) }
        }
        if !sshHosts.isEmpty {
            for i in checks.indices where checks[i].name.hasPrefix("ssh:") { checks[i].required = false }
            let up = checks.filter { $0.name.hasPrefix("ssh:") && $0.ok }.count
            checks.append(BackendCheck(name: "ssh", ok: up > 0, detail: "\(up) of \(sshHosts.count) SSH host(s) reachable"))
        }
        return checks.sorted { $0.name < $1.name }
    }

    /// Why squeue has nothing to go on, or nil. Without a slurm.conf, squeue would look for the
    /// controller through DNS SRV records (configless Slurm) or retry a missing file for a
    /// minute; a probe should do neither.
    static func missingSlurmConfiguration(_ environment: [String: String]) -> String? {
        if let conf = environment["SLURM_CONF"], !conf.isEmpty {
            return access(conf, R_OK) == 0 ? nil : "SLURM_CONF=\(conf) cannot be read"
        }
        for path in ["/etc/slurm/slurm.conf", "/etc/slurm-llnl/slurm.conf", "/usr/local/etc/slurm.conf"] where access(path, R_OK) == 0 {
            return nil
        }
        return "no slurm.conf: SLURM_CONF is unset and /etc/slurm/slurm.conf is missing"
    }

    /// Nil when `host:port` accepts a TCP connection within `timeout`, else why not.
    static func accepts(host: String, port: Int, within timeout: Duration) async -> String? {
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000))
        do {
            let channel = try await bootstrap.connect(host: host, port: port).get()
            try? await channel.close()
            return nil
        } catch {
            return "unreachable: \(error)"
        }
    }
}
