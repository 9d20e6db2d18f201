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
    private var payload: LauncherConnectionInfo?
    private var commEndpoint: (host: String, port: Int)?
    private var forwards: [(local: Int, remote: Int)] = []
    private var localLog: String?
    private var remoteBase: String?
    private var remotePIDKnown = false

    public init(services: RemoteServices, config: JSONValue?, logger: Logger) {
        self.services = services
        self.specHosts = Self.hosts(config?["remote_hosts"])
        self.portRange = config?["port_range"]?.stringValue ?? services.configuration.portRange
        self.logger = logger
    }

    static func hosts(_ value: JSONValue?) -> [String] {
        if let s = value?.stringValue { return s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        if case .array(let items)? = value { return items.compactMap(\.stringValue) }
        return []
    }

    public func launch(_ request: LaunchRequest) async throws -> ConnectionInfo {
        let config = services.configuration
        if remotePIDKnown { await killRemote(SIGKILL) }  // a relaunch after a lost session
        await teardownForwards()
        let listener = try await services.listener()
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
                                           logDirectory: config.kernelLogDirectory, kernelID: request.kernelID)
        let log = "\(request.runtimeDirectory)/kernel-\(request.kernelID).ssh.log"
        localLog = log
        await listener.register(request.kernelID)
        let session: ChildProcess
        do {
            session = try await ChildProcess.spawn(await services.ssh.commandArguments(target) + ["--", line], logFile: log)
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
            payload = info
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
        if let commEndpoint, await CommPort.signal(sig, host: commEndpoint.host, port: commEndpoint.port) { return }
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
        if let commEndpoint { _ = await CommPort.shutdown(host: commEndpoint.host, port: commEndpoint.port) }
        commEndpoint = nil
        if session?.isRunning == true { await stopEverything() }
        await teardownForwards()
        if let host, let remoteBase {
            _ = try? await services.ssh.run(host, "rm -f \(RemoteCommand.quote(remoteBase + ".pid"))", timeout: .seconds(5))
        }
        remotePIDKnown = false
        if let localLog, !restart { unlink(localLog) }
        if !restart, let host {
            await services.ssh.release(host)
            self.host = nil
        }
    }

    public func recentOutput() async -> String { await remoteLogTail() }

    public func describe() -> String {
        "ssh \(host ?? "?") pid \(payload?.pid.map(String.init) ?? "?")"
    }

    public func details() -> [String: String] {
        var d = ["kind": "ssh"]
        if let host { d["host"] = host }
        if let pid = payload?.pid { d["pid"] = String(pid) }
        if let log = remoteBase { d["log"] = log + ".log" }
        if !forwards.isEmpty { d["tunnel"] = "true" }
        return d
    }
}
