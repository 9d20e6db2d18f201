import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The SSH side of the gateway: one OpenSSH control master per `user@host:port`, owned by the
/// gateway (a child process, stopped at exit), so that every kernel launch, signal and clean-up
/// on a host rides one authenticated connection instead of paying a new handshake; and host
/// selection as EG's `DistributedProcessProxy` does it.
///
/// OpenSSH (not a Swift SSH library) because it is what the hosts already trust: the user's
/// keys, agent, `~/.ssh/config`, known_hosts, ProxyJump and GSSAPI all keep working.
public actor SSHHosts {
    public struct Target: Hashable, Sendable, CustomStringConvertible {
        public var host: String
        public var user: String?
        public var port: Int
        public var description: String { "\(user.map { "\($0)@" } ?? "")\(host):\(port)" }
        var destination: String { user.map { "\($0)@\(host)" } ?? host }
    }

    private let configuration: RemoteConfiguration
    private let controlDirectory: String
    private let logger: Logger
    private var masters: [Target: ChildProcess] = [:]
    private var starting: [Target: Task<ChildProcess, any Error>] = [:]
    private var roundRobin = 0
    private var active: [String: Int] = [:]

    public init(configuration: RemoteConfiguration, controlDirectory: String, logger: Logger) {
        self.configuration = configuration
        self.controlDirectory = controlDirectory
        self.logger = logger
    }

    /// Picks a host: `KERNEL_REMOTE_HOST` if given, else round-robin or least-connection over
    /// the kernelspec's `remote_hosts` or EG_REMOTE_HOSTS. The choice is counted until `release`.
    func pick(requested: String?, hosts: [String]) throws -> String {
        let candidates = hosts.isEmpty ? configuration.remoteHosts : hosts
        guard !candidates.isEmpty else { throw ProvisionerError("no remote hosts configured (EG_REMOTE_HOSTS)") }
        let host: String
        if let requested, !requested.isEmpty {
            guard Self.isHostName(requested) else { throw ProvisionerError("KERNEL_REMOTE_HOST '\(requested.prefix(64))' is not a host name") }
            host = requested
        } else if configuration.loadBalancing != .roundRobin {
            // free-capacity placement happens in the gateway before the launch (it names the host
            // with KERNEL_REMOTE_HOST); reaching here means no ledger had the host: fewest kernels.
            host = candidates.min { (active[$0] ?? 0) < (active[$1] ?? 0) }!
        } else {
            host = candidates[roundRobin % candidates.count]
            roundRobin += 1
        }
        guard Self.isHostName(host) else { throw ProvisionerError("remote host '\(host.prefix(64))' is not a host name") }
        active[host, default: 0] += 1
        return host
    }

    /// A DNS name or an IP address. Anything else, and above all a leading `-`, which `ssh` would
    /// read as an option (`-oProxyCommand=...` runs a command on the gateway host), is refused.
    public static func isHostName(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 253, !s.hasPrefix("-"), !s.hasPrefix(".") else { return false }
        return s.unicodeScalars.allSatisfy { hostCharacters.contains($0) }
    }

    private static let hostCharacters = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:_[]")

    /// A kernel re-attached on `host` counts toward least-connection as if it had been picked.
    func adopt(_ host: String) {
        active[host, default: 0] += 1
    }

    /// The running master for `host`: its pid and control socket, recorded with persisted kernels
    /// so that the next gateway can stop it if this one ends without doing so.
    func masterProcess(_ host: String) -> (pid: pid_t, socket: String)? {
        let t = target(host)
        guard let master = masters[t], master.isRunning else { return nil }
        return (master.pid, controlPath(t))
    }

    func release(_ host: String) {
        if let n = active[host] { active[host] = max(0, n - 1) }
    }

    func target(_ host: String) -> Target {
        Target(host: host, user: configuration.remoteUser, port: configuration.sshPort)
    }

    func controlPath(_ target: Target) -> String {
        // Short and free of odd characters: sun_path holds 108 bytes.
        let hash = "\(target)".utf8.reduce(UInt64(5381)) { ($0 &<< 5) &+ $0 &+ UInt64($1) }
        let tag = String(hash, radix: 36)
        return "\(controlDirectory)/ssh-\(tag).sock"
    }

    /// `ssh` arguments for one command over the master of `target`.
    func commandArguments(_ target: Target, extra: [String] = []) -> [String] {
        ["ssh", "-S", controlPath(target), "-o", "ControlMaster=no", "-o", "BatchMode=yes", "-p", "\(target.port)"]
            + configuration.sshOptions + extra + [target.destination]
    }

    /// Ensures the control master for `target` is up (authenticated), starting it if needed.
    /// Fails with ssh's own words when the host is unreachable or refuses us.
    func ensureMaster(_ target: Target) async throws {
        if let master = masters[target], master.isRunning { return }
        if let task = starting[target] {
            _ = try await task.value
            return
        }
        let task = Task { try await self.startMaster(target) }
        starting[target] = task
        defer { starting[target] = nil }
        masters[target] = try await task.value
    }

    private func startMaster(_ target: Target) async throws -> ChildProcess {
        let socket = controlPath(target)
        unlink(socket)
        let log = "\(controlDirectory)/ssh-master-\(target.host)-\(target.port).log"
        unlink(log)
        let argv = ["ssh", "-M", "-N", "-S", socket, "-o", "ControlPersist=no", "-o", "BatchMode=yes",
                    "-o", "ConnectTimeout=\(configuration.sshConnectTimeout)", "-o", "ServerAliveInterval=15",
                    "-o", "ServerAliveCountMax=3", "-o", "ExitOnForwardFailure=no", "-p", "\(target.port)"]
            + configuration.sshOptions + [target.destination]
        let master = try await ChildProcess.spawn(argv, logFile: log)
        logger.info("starting SSH control master", metadata: ["target": "\(target)", "pid": "\(master.pid)"])
        // The socket appears once authentication succeeded; ssh exits if it cannot connect or log in.
        // One-time cost per host; sessions after that are event-driven.
        let deadline = ContinuousClock.now + .seconds(configuration.sshConnectTimeout + 5)
        while master.isRunning {
            if access(socket, F_OK) == 0 { return master }
            if ContinuousClock.now > deadline {
                await master.stop()
                throw ProvisionerError("SSH to \(target) did not authenticate within \(configuration.sshConnectTimeout + 5)s")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let exit = await master.waitForExit()
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let reason = output.split(separator: "\n").suffix(3).joined(separator: " ").trimmingCharacters(in: .whitespaces)
        throw ProvisionerError("SSH to \(target) failed (\(exit)): \(reason.isEmpty ? "no output" : reason)")
    }

    /// Runs a short command on `host` over its master.
    func run(_ host: String, _ command: String, timeout: Duration = .seconds(15)) async throws -> ShortCommand.Result {
        let t = target(host)
        try await ensureMaster(t)
        return try await ShortCommand.run(commandArguments(t) + ["--", command], timeout: timeout)
    }

    /// Forwards `127.0.0.1:local` to `remoteHost:remote` as seen from the SSH server, through the master.
    func forward(_ host: String, local: Int, remote: Int) async throws {
        let t = target(host)
        let r = try await ShortCommand.run(commandArguments(t, extra: ["-O", "forward", "-L", "127.0.0.1:\(local):127.0.0.1:\(remote)"]))
        guard r.succeeded else { throw ProvisionerError("SSH port forward to \(host):\(remote) failed: \(r.output)") }
    }

    func cancelForward(_ host: String, local: Int, remote: Int) async {
        let t = target(host)
        _ = try? await ShortCommand.run(commandArguments(t, extra: ["-O", "cancel", "-L", "127.0.0.1:\(local):127.0.0.1:\(remote)"]))
    }

    /// Stops every master (gateway exit).
    public func shutdown() async {
        for (target, master) in masters {
            await master.stop()
            unlink(controlPath(target))
        }
        masters.removeAll()
    }
}
