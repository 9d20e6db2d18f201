import Foundation
import JupyterProtocol
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Runs a kernel launcher on another host over SSH, like EG's `DistributedProcessProxy`
/// (`enterprise_gateway.services.processproxies.distributed`), speaking EG's launcher protocol.
///
/// Differences from EG, on purpose: the launcher runs in an SSH session that stays open (over the
/// host's control master, so no new handshake), so the session's end *is* the kernel's end and
/// needs no polling; the remote shell records the launcher's pid, so a launch that fails or times
/// out before any payload still has its process group killed; the kernel's environment reaches
/// the remote shell single-quoted and without the gateway host's own variables.
public actor SSHProvisioner: KernelProvisioner {
    private let services: RemoteServices
    private let specHosts: [String]
    private let portRange: String
    private var logger: Logger
    private var host: String?
    private var session: ChildProcess?
    /// The launcher's pid on the remote host, as it reported it.
    private var kernelPID: Int?
    /// Set when the launch applied resource limits, whose cgroups clean-up removes.
    private var limitedKernelID: String?
    private var commEndpoint: (host: String, port: Int)?
    private var forwards: [(local: Int, remote: Int)] = []
    private var localLog: String?
    private var remoteBase: String?
    private var remotePIDKnown = false
    /// The kernelspec's `process_proxy.config`.
    private let specConfig: JSONValue?
    /// The launch key of a kernel started in the authenticated mode (`LaunchSecret`).
    private var commAuth: CommPort.Credentials?

    public init(services: RemoteServices, config: JSONValue?, logger: Logger) {
        self.services = services
        self.specHosts = Self.hosts(config?["remote_hosts"])
        self.portRange = config?["port_range"]?.stringValue ?? services.configuration.portRange
        self.specConfig = config
        self.logger = logger
    }

    /// The hosts a kernelspec's kernels may run on: its `remote_hosts`, else EG_REMOTE_HOSTS.
    public static func candidateHosts(config: JSONValue?, configuration: RemoteConfiguration) -> [String] {
        let own = hosts(config?["remote_hosts"])
        return own.isEmpty ? configuration.remoteHosts : own
    }

    public static func hosts(_ value: JSONValue?) -> [String] {
        if let s = value?.stringValue { return s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        if case .array(let items)? = value { return items.compactMap(\.stringValue) }
        return []
    }

    public func launch(_ request: LaunchRequest) async throws -> ConnectionInfo {
        let config = services.configuration
        if remotePIDKnown { await killRemote(SIGKILL) }  // a relaunch after a lost session
        await teardownForwards()
        let listener = try await services.listener()
        let secret = try services.configuration.launchSecret(config: specConfig, kernelName: request.spec.name)
        let chosen: String
        if let host { chosen = host } else {
            chosen = try await services.ssh.pick(requested: request.environment["KERNEL_REMOTE_HOST"], hosts: specHosts)
            host = chosen
        }
        logger[metadataKey: "host"] = "\(chosen)"
        let target = await services.ssh.target(chosen)
        try await services.ssh.ensureMaster(target)

        let base = "\(config.kernelLogDirectory)/kernel-\(request.kernelID)"
        remoteBase = base
        let argv = RemoteCommand.argv(spec: request.spec, kernelID: request.kernelID, responseAddress: listener.address,
                                      publicKey: listener.keys.publicKeyBase64, portRange: portRange,
                                      connectionFile: base + ".json")
        let line = RemoteCommand.shellLine(argv: argv, environment: RemoteCommand.environment(request.environment),
                                           logDirectory: config.kernelLogDirectory, kernelID: request.kernelID,
                                           limits: RemoteResourceLimits.prelude(kernelID: request.kernelID, resources: request.resources),
                                           keyOnStdin: secret != nil)
        limitedKernelID = request.resources.map { _ in request.kernelID }
        let log = "\(request.runtimeDirectory)/kernel-\(request.kernelID).ssh.log"
        localLog = log
        await listener.register(request.kernelID, secret: secret)
        commAuth = secret.map { CommPort.Credentials(secret: $0, kernelID: request.kernelID) }
        let session: ChildProcess
        do {
            // The launch key goes down the session's stdin: not in any argv on either host.
            session = try await ChildProcess.spawn(await services.ssh.commandArguments(target) + ["--", line], logFile: log,
                                                   input: secret.map { $0.base64 + "\n" })
        } catch {
            await listener.unregister(request.kernelID)
            throw error
        }
        self.session = session
        remotePIDKnown = true
        logger.info("remote launcher started over SSH", metadata: ["target": "\(target)", "ssh_pid": "\(session.pid)"])

        let outcome = await LauncherOutcome.wait(kernelID: request.kernelID, listener: listener, timeout: request.launchTimeout) {
            let exit = await session.waitForExit()
            return "exited (\(exit))"
        }
        switch outcome {
        case .info(let info):
            kernelPID = info.pid
            var ip = chosen
            var ports = info.connection
            if config.enableTunneling {
                ports = try await tunnel(info, host: chosen)
                ip = "127.0.0.1"
                let forwarded = info.commPort.flatMap { remote in forwards.first { $0.remote == remote } }
                commEndpoint = forwarded.map { (host: "127.0.0.1", port: $0.local) }
            } else {
                commEndpoint = info.commPort.map { (host: chosen, port: $0) }
            }
            var reached = info
            reached.connection = ports
            logger.info("remote kernel reported its connection info",
                        metadata: ["pid": "\(info.pid.map(String.init) ?? "?")", "comm_port": "\(info.commPort.map(String.init) ?? "none")"])
            return reached.connectionInfo(ip: ip, kernelName: request.spec.name)
        case .gone(let how):
            let tail = await remoteLogTail()
            await stopEverything()
            throw ProvisionerError("Launcher for kernel \(request.kernelID) on \(target) \(how) before sending its connection info."
                                   + (tail.isEmpty ? "" : " Last output:\n" + tail))
        case .timedOut:
            let tail = await remoteLogTail()
            await stopEverything()
            throw ProvisionerError("KernelID: '\(request.kernelID)' launch timeout due to: Waited too long (\(request.launchTimeout.seconds)s) to get connection info from \(target)."
                                   + (tail.isEmpty ? "" : " Last output:\n" + tail))
        }
    }

    /// Forwards the five kernel ports and the comm port through the host's control master.
    private func tunnel(_ info: LauncherConnectionInfo, host: String) async throws -> LauncherConnectionInfo.ConnectionPorts {
        let remote = [info.connection.shell, info.connection.iopub, info.connection.stdin, info.connection.control, info.connection.hb]
            + (info.commPort.map { [$0] } ?? [])
        let local = try PortAllocator.shared.allocate(count: remote.count)
        for (l, r) in zip(local, remote) {
            try await services.ssh.forward(host, local: l, remote: r)
            forwards.append((l, r))
        }
        var ports = info.connection
        (ports.shell, ports.iopub, ports.stdin, ports.control, ports.hb) = (local[0], local[1], local[2], local[3], local[4])
        return ports
    }

    private func teardownForwards() async {
        guard let host else { return }
        for f in forwards { await services.ssh.cancelForward(host, local: f.local, remote: f.remote) }
        forwards.removeAll()
    }

    private func remoteLogTail() async -> String {
        var text = ""
        if let host, let remoteBase,
           let r = try? await services.ssh.run(host, "tail -n 15 \(RemoteCommand.quote(remoteBase + ".log")) 2>/dev/null", timeout: .seconds(5)) {
            text = r.output
        }
        if let localLog, let ssh = try? String(contentsOfFile: localLog, encoding: .utf8), !ssh.isEmpty {
            text += (text.isEmpty ? "" : "\n") + ssh.split(separator: "\n").suffix(5).joined(separator: "\n")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Signals the launcher's process group on the remote host by its recorded pid.
    @discardableResult
    private func killRemote(_ sig: Int32) async -> Bool {
        guard let host, let remoteBase else { return false }
        let pidFile = RemoteCommand.quote(remoteBase + ".pid")
        let cmd = "p=$(cat \(pidFile) 2>/dev/null) && [ -n \"$p\" ] && { kill -\(sig) -- -$p 2>/dev/null || kill -\(sig) $p 2>/dev/null; }"
        let r = try? await services.ssh.run(host, cmd, timeout: .seconds(10))
        return r?.succeeded ?? false
    }

    private func stopEverything() async {
        await killRemote(SIGKILL)
        await session?.stop()
        await teardownForwards()
        remotePIDKnown = false
    }

    public func waitForExit() async -> KernelExit {
        guard let session else { return .exited(code: -1) }
        return await session.waitForExit()
    }

    public func isAlive() -> Bool { session?.isRunning ?? false }

    /// Interrupts and other signals go through the launcher's comm port (EG's `send_signal`);
    /// without one, `kill` on the remote host.
    public func signal(_ sig: Int32) async {
        if let commEndpoint, await CommPort.signal(sig, host: commEndpoint.host, port: commEndpoint.port, auth: commAuth) { return }
        await killRemote(sig)
    }

    public func terminate() async {
        let signalled = await killRemote(SIGTERM)
        if !signalled { await session?.stop() }
    }

    public func kill() async {
        await killRemote(SIGKILL)
        await session?.stop(grace: .seconds(1))
    }

    public func cleanup(restart: Bool) async {
        if let commEndpoint { _ = await CommPort.shutdown(host: commEndpoint.host, port: commEndpoint.port, auth: commAuth) }
        commEndpoint = nil
        if session?.isRunning == true { await stopEverything() }
        await teardownForwards()
        if let host, let remoteBase {
            var command = "rm -f \(RemoteCommand.quote(remoteBase + ".pid"))"
            if !restart, let id = limitedKernelID { command += "; " + RemoteResourceLimits.cleanupCommand(kernelID: id) }
            _ = try? await services.ssh.run(host, command, timeout: .seconds(5))
        }
        remotePIDKnown = false
        if let localLog, !restart { unlink(localLog) }
        if !restart, let host {
            await services.ssh.release(host)
            self.host = nil
        }
    }

    // MARK: Session persistence

    /// What the next gateway needs to take this kernel over: the host, the remote pid file's
    /// base, the comm port, any tunnels, and the local `ssh` processes that an abrupt gateway end
    /// leaves behind (they are stopped by the next gateway, after checking they are still ours).
    public func persistentHandle() async -> KernelHandle? {
        guard let host, let remoteBase, let session, session.isRunning else { return nil }
        var extra = ["remote_base": remoteBase, "ssh_pid": String(session.pid)]
        if let master = await services.ssh.masterProcess(host) {
            extra["master_pid"] = String(master.pid)
            extra["master_socket"] = master.socket
        }
        if let commEndpoint {
            extra["comm_host"] = commEndpoint.host
            extra["comm_port"] = String(commEndpoint.port)
        }
        commAuth?.store(in: &extra)
        if !forwards.isEmpty { extra["forwards"] = forwards.map { "\($0.local):\($0.remote)" }.joined(separator: ",") }
        return KernelHandle(backend: "ssh", pid: kernelPID.map { Int32($0) }, host: host, logFile: remoteBase + ".log", extra: extra)
    }

    /// Takes over a remote kernel an earlier gateway started. The launcher outlives its `ssh`
    /// session (its output goes to a file, there is no tty to hang up), so the earlier gateway's
    /// `ssh` processes are stopped and a new session on this gateway's master watches the
    /// recorded pid: that session ends when the kernel does, as the launch session would have.
    /// Nil when the host cannot be reached or the launcher is no longer running.
    public static func attach(handle: KernelHandle, services: RemoteServices, config: JSONValue?, runtimeDirectory: String,
                              logger: Logger) async -> SSHProvisioner? {
        guard handle.backend == "ssh", let host = handle.host, SSHHosts.isHostName(host),
              let base = handle.extra["remote_base"], !base.isEmpty else { return nil }
        // Orphans of an abrupt end (SIGKILL): the launch session mentions the pid file's base,
        // the master its control socket; anything else under those pids is not ours to stop.
        if let pid = handle.extra["ssh_pid"].flatMap(Int32.init) { await OrphanedProcess.stop(pid, mentioning: base) }
        if let pid = handle.extra["master_pid"].flatMap(Int32.init), let socket = handle.extra["master_socket"] {
            await OrphanedProcess.stop(pid, mentioning: socket)
        }
        let provisioner = SSHProvisioner(services: services, config: config, logger: logger)
        guard await provisioner.adopt(host: host, base: base, handle: handle, runtimeDirectory: runtimeDirectory) else {
            return nil
        }
        return provisioner
    }

    private func adopt(host: String, base: String, handle: KernelHandle, runtimeDirectory: String) async -> Bool {
        self.host = host
        remoteBase = base
        kernelPID = handle.pid.map(Int.init)
        logger[metadataKey: "host"] = "\(host)"
        let pidFile = RemoteCommand.quote(base + ".pid")
        let running = "p=$(cat \(pidFile) 2>/dev/null) && [ -n \"$p\" ] && kill -0 \"$p\" 2>/dev/null"
        guard let check = try? await services.ssh.run(host, running, timeout: .seconds(15)), check.succeeded else {
            logger.info("persisted remote launcher is not running", metadata: ["remote_base": "\(base)"])
            self.host = nil
            return false
        }
        let target = await services.ssh.target(host)
        if let list = handle.extra["forwards"] {
            for pair in list.split(separator: ",") {
                let ports = pair.split(separator: ":").compactMap { Int($0) }
                guard ports.count == 2 else { continue }
                do {
                    try await services.ssh.forward(host, local: ports[0], remote: ports[1])
                    forwards.append((ports[0], ports[1]))
                } catch {
                    logger.warning("could not restore SSH tunnel", metadata: ["error": "\(error)"])
                    await teardownForwards()
                    self.host = nil
                    return false
                }
            }
        }
        let log = "\(runtimeDirectory)/kernel-\(URL(fileURLWithPath: base).lastPathComponent.dropFirst("kernel-".count)).ssh.log"
        localLog = log
        // One check a second on the remote host, inside one session: its end is the kernel's end.
        let watch = running + " && while kill -0 \"$p\" 2>/dev/null; do sleep 1; done"
        do {
            session = try await ChildProcess.spawn(await services.ssh.commandArguments(target) + ["--", watch], logFile: log)
        } catch {
            await teardownForwards()
            self.host = nil
            return false
        }
        remotePIDKnown = true
        if let h = handle.extra["comm_host"], let port = handle.extra["comm_port"].flatMap(Int.init) { commEndpoint = (h, port) }
        commAuth = CommPort.Credentials(handle: handle.extra)
        await services.ssh.adopt(host)
        logger.info("re-attached remote launcher over SSH", metadata: ["pid": "\(kernelPID.map(String.init) ?? "?")"])
        return true
    }

    /// OOM kills counted by the kernel's memory cgroup on its host (cgroup v1 `memory.oom_control`).
    public func outOfMemoryKills() async -> Int {
        guard let host, let id = limitedKernelID else { return 0 }
        let file = RemoteCommand.quote("\(RemoteResourceLimits.root)/memory/ganymede/\(id)/memory.oom_control")
        guard let r = try? await services.ssh.run(host, "cat \(file) 2>/dev/null", timeout: .seconds(5)), r.succeeded else { return 0 }
        return LocalResourceLimits.oomKillCount(in: r.output)
    }

    /// A gateway leaving this kernel running for the next one: only the local `ssh` session goes.
    public func release() async {
        await session?.stop(grace: .seconds(2))
        await teardownForwards()
    }

    public func recentOutput() async -> String { await remoteLogTail() }

    public func describe() -> String {
        "ssh \(host ?? "?") pid \(kernelPID.map(String.init) ?? "?")"
    }

    public func details() -> [String: String] {
        var d = ["kind": "ssh"]
        if let host { d["host"] = host }
        if let pid = kernelPID { d["pid"] = String(pid) }
        if let log = remoteBase { d["log"] = log + ".log" }
        if !forwards.isEmpty { d["tunnel"] = "true" }
        return d
    }
}
