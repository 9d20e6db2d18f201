import Foundation
import JupyterProtocol
import KernelBridge
import Logging
import Provisioning
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The REST kernel model (jupyter_server `kernel_model`), with `last_activity` formatted
/// as `%Y-%m-%dT%H:%M:%S.%fZ` because jupyter_server's gateway client parses it strictly.
public struct KernelModel: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var lastActivity: String
    public var executionState: String
    public var connections: Int
    public var reason: String?
    /// What the kernel was granted (resource profiles), when it asked for anything.
    public var resources: ResourceLedger.Grant?
    /// Where a remote kernel runs (host, pid, Slurm job id); absent for local kernels.
    public var provisioner: [String: String]?

    enum CodingKeys: String, CodingKey {
        case id, name, lastActivity = "last_activity", executionState = "execution_state", connections, reason, resources
        case provisioner
    }
}

/// One kernel: its provisioner, its shared ZeroMQ connection and its lifecycle.
public actor ManagedKernel {
    public nonisolated let id: String
    public nonisolated let spec: KernelSpec
    public nonisolated let username: String
    /// Users the owner shared the kernel with (`PUT /api/kernels/{id}/shares`). Read on every
    /// access check, from the registry's actor, hence a lock rather than actor state.
    private nonisolated let sharedWith = Mutex<Set<String>>([])
    let provisioner: any KernelProvisioner
    let request: LaunchRequest
    let configuration: GatewayConfiguration
    let metrics: GatewayMetrics
    var logger: Logger
    /// Called after every successful (re)launch, with what re-attach needs (persistence).
    var onLaunched: (@Sendable (KernelSessionRecord) async -> Void)?
    /// Granted resources and their enforcement; released when the kernel ends for good.
    nonisolated let resources: KernelResources?
    private var oomKillsSeen = 0
    /// The start request's `env`, kept for the session record.
    var clientEnv: [String: String]?
    public private(set) var connection: KernelConnection?
    private(set) var lifecycle = KernelLifecycle()
    private var consecutiveRestarts = 0
    private var watcher: Task<Void, Never>?
    private var lastActivityFallback = Date()

    init(id: String, spec: KernelSpec, username: String, provisioner: any KernelProvisioner, request: LaunchRequest,
         configuration: GatewayConfiguration, metrics: GatewayMetrics, logger: Logger, resources: KernelResources? = nil) {
        self.id = id
        self.resources = resources
        self.metrics = metrics
        self.spec = spec
        self.username = username
        self.provisioner = provisioner
        self.request = request
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "kernel_id"] = "\(id)"
        self.logger = logger
    }

    public var isDead: Bool { lifecycle.isDead }

    /// Whether `identity` may see and use this kernel: the compatible modes (no user) and
    /// admins may use every kernel, a named user their own and those shared with them.
    public nonisolated func mayBeUsed(by identity: Identity) -> Bool {
        guard let user = identity.user, !identity.isAdmin else { return true }
        return user == username || sharedWith.withLock { $0.contains(user) }
    }

    /// Whether `identity` may delete the kernel or change whom it is shared with.
    public nonisolated func isOwned(by identity: Identity) -> Bool {
        guard let user = identity.user, !identity.isAdmin else { return true }
        return user == username
    }

    public nonisolated var shares: Set<String> { sharedWith.withLock { $0 } }

    /// Replaces whom the kernel is shared with, persists it, and closes the WebSockets of users
    /// who lost access (a revocation that left their open sockets running would not be one).
    func share(with users: Set<String>) async {
        let revoked = sharedWith.withLock { current in
            defer { current = users }
            return current.subtracting(users)
        }
        await persist()
        guard let connection else { return }
        for user in revoked {
            let n = await connection.disconnect(user: user)
            if n > 0 {
                logger.info("closed WebSockets of a user the kernel is no longer shared with",
                            metadata: ["user": "\(user)", "websockets": "\(n)"])
            }
        }
    }

    /// Restores shares from a persisted record (re-attach).
    func restoreShares(_ users: Set<String>) {
        sharedWith.withLock { $0 = users }
    }

    /// The backend's type name, for metrics and the status page.
    nonisolated var provisionerName: String { String(describing: type(of: provisioner)) }

    func metricsSample() async -> GatewayMetrics.KernelSample {
        let a = await activity()
        var replay = (sessions: 0, messages: 0, bytes: 0)
        var dropped = 0
        var bad = 0
        var slow = 0
        if let connection {
            replay = await connection.replayBuffered
            dropped = await connection.replayDroppedTotal
            bad = await connection.droppedBadSignatures
            slow = await connection.slowClientsDisconnected
        }
        return GatewayMetrics.KernelSample(state: a.state, kernelspec: spec.name, user: username, replay: replay,
                                           replayDropped: dropped, badSignatures: bad, slowClientsDisconnected: slow)
    }

    /// jupyter_server's `execution_state`, `last_activity` and connection count: what the REST
    /// model shows and the culler looks at.
    func activity() async -> (dead: Bool, state: String, lastActivity: Date, connections: Int) {
        var state = lifecycle.restState
        var last = lastActivityFallback
        var connections = 0
        if let connection {
            if state == nil { state = await connection.executionState }
            last = max(last, await connection.lastActivity)
            connections = await connection.connectionCount
        }
        return (lifecycle.isDead, state ?? "unknown", last, connections)
    }

    /// The kernelspec's `metadata.cull_idle_timeout` (seconds), as jupyter_server reads it.
    nonisolated func cullIdleTimeout(default fallback: Duration) -> Duration {
        Self.seconds(spec.file.metadata?["cull_idle_timeout"]) ?? fallback
    }

    /// Auto-restart, unless the kernelspec says otherwise (`metadata.auto_restart`,
    /// `metadata.restart_limit`).
    nonisolated var autoRestart: Bool {
        if case .bool(let b)? = spec.file.metadata?["auto_restart"] { return b }
        return configuration.autoRestart
    }

    nonisolated var restartLimit: Int {
        if case .int(let n)? = spec.file.metadata?["restart_limit"], n >= 0 { return n }
        return configuration.restartLimit
    }

    static func seconds(_ value: JSONValue?) -> Duration? {
        switch value {
        case .int(let i)?: return .seconds(i)
        case .double(let d)? where d.isFinite: return .milliseconds(Int64(d * 1000))
        case .string(let s)?: return Double(s).flatMap { $0.isFinite ? .milliseconds(Int64($0 * 1000)) : nil }
        default: return nil
        }
    }

    /// An iopub status of the gateway's own to every connected client.
    func announce(_ state: String, reason: String) async {
        guard let connection, !lifecycle.isDead else { return }
        await connection.broadcast(await connection.statusMessage(state, reason: reason))
    }

    /// Shuts the kernel down for the culler, first telling connected clients why with an iopub
    /// `status: dead` (a bare close leaves them guessing, nb2kg#31).
    func cull(reason: String) async {
        if let connection, !lifecycle.isDead {
            await connection.broadcast(await connection.statusMessage("dead", reason: "culled: " + reason))
        }
        await shutdown()
    }

    public func model() async -> KernelModel {
        let a = await activity()
        var reason: String?
        if case .dead(let r) = lifecycle.state { reason = r }
        let details = await provisioner.details()
        return KernelModel(id: id, name: spec.name, lastActivity: Timestamp.iso8601(a.lastActivity),
                           executionState: a.state, connections: a.connections, reason: reason,
                           resources: resources?.grant, provisioner: details.isEmpty ? nil : details)
    }

    func setOnLaunched(clientEnv: [String: String]?, _ hook: @escaping @Sendable (KernelSessionRecord) async -> Void) {
        self.clientEnv = clientEnv
        onLaunched = hook
    }

    /// Records where the running kernel is, for the session store.
    private func persist() async {
        guard let onLaunched, let connection, let handle = await provisioner.persistentHandle() else { return }
        await onLaunched(KernelSessionRecord(kernelID: id, kernelspec: spec.name, username: username,
                                             connection: connection.info, handle: handle, clientEnv: clientEnv,
                                             sharedWith: shares.isEmpty ? nil : shares.sorted(), savedAt: Date()))
    }

    /// Takes over a kernel an earlier gateway started (the provisioner is already attached to
    /// its process): connects, waits for `kernel_info`, and watches it as if we had started it.
    func attach(info: ConnectionInfo, timeout: Duration) async throws(GatewayError) {
        let c = try await openConnection(info)
        connection = c
        guard await c.waitUntilReady(timeout: timeout) else {
            await c.close()
            connection = nil
            throw GatewayError(.internalServerError, reason: "Kernel not answering", "Kernel \(id) did not answer kernel_info within \(timeout)")
        }
        lifecycle.started()
        await c.startHeartbeat(interval: configuration.heartbeatInterval)
        watchForDeath()
    }

    /// The kernel's shared connection, with the configured replay bounds.
    private func openConnection(_ info: ConnectionInfo) async throws(GatewayError) -> KernelConnection {
        let c = KernelConnection(kernelID: id, info: info, logger: logger)
        do {
            try await c.connect()
        } catch {
            throw GatewayError(.internalServerError, reason: "Kernel connection failed", "\(error)")
        }
        await c.setReplayLimits(messages: configuration.replayBufferMessages, bytes: configuration.replayBufferBytes,
                                ttl: configuration.replayBufferTTL)
        return c
    }

    /// Launches the process and waits until it answers `kernel_info_request`.
    /// On failure nothing is left running.
    func start(timeout: Duration) async throws(GatewayError) {
        do {
            try await launchAndWait(timeout: timeout)
            lifecycle.started()
            await persist()
            // Only once the kernel is up: pings before it binds its port would count as missed.
            await connection?.startHeartbeat(interval: configuration.heartbeatInterval)
            watchForDeath()
        } catch {
            lifecycle.died(reason: error.message)
            await stopProcess(restart: false, everReady: false)
            throw error
        }
    }

    private func launchAndWait(timeout: Duration) async throws(GatewayError) {
        let info: ConnectionInfo
        do {
            info = try await provisioner.launch(request)
        } catch {
            switch (error as? ProvisionerError)?.kind {
            case .forbidden?: throw GatewayError(.forbidden, reason: "Forbidden", "\(error)")
            case .badRequest?: throw GatewayError.badRequest("\(error)")
            default: throw GatewayError(.internalServerError, reason: "Kernel launch failed", "\(error)")
            }
        }
        if connection == nil {
            connection = try await openConnection(info)
        } else {
            do {
                try await connection?.retarget(info)
            } catch {
                throw GatewayError(.internalServerError, reason: "Kernel connection failed", "\(error)")
            }
            await connection?.resetReadiness()
        }
        let connection = connection!
        let provisioner = self.provisioner
        let outcome: LaunchOutcome = await firstResult([
            { @Sendable in await connection.waitUntilReady(timeout: timeout) ? LaunchOutcome.ready : LaunchOutcome.timedOut },
            { @Sendable in LaunchOutcome.exited(await provisioner.waitForExit()) },
        ])
        switch outcome {
        case .ready:
            return
        case .timedOut:
            let output = await provisioner.recentOutput()
            throw GatewayError(.internalServerError, reason: "Kernel launch timeout",
                               "Kernel \(id) (\(spec.name)) did not answer kernel_info within \(timeout)." + Self.tail(output))
        case .exited(let exit):
            let output = await provisioner.recentOutput()
            throw GatewayError(.internalServerError, reason: "Kernel died during startup",
                               "Kernel \(id) (\(spec.name)) \(exit) before it was ready." + Self.tail(output))
        }
    }

    enum LaunchOutcome: Sendable { case ready, timedOut, exited(KernelExit) }

    static func tail(_ output: String) -> String {
        output.isEmpty ? "" : " Last output:\n" + output
    }

    /// Auto-restart when the process dies on its own (jupyter_client `KernelRestarter`).
    private func watchForDeath() {
        watcher?.cancel()
        let provisioner = self.provisioner
        watcher = Task { [weak self] in
            let exit = await provisioner.waitForExit()
            guard !Task.isCancelled else { return }
            await self?.processDied(exit)
        }
    }

    /// "out of memory (limit 256 MiB)" when the kernel's memory cgroup OOM-killed it since we
    /// last looked, else the exit status.
    private func deathReason(_ exit: KernelExit) async -> String {
        guard let memory = resources?.grant.request.memoryBytes else { return "\(exit)" }
        // Local limits are read here; a remote backend asks its host (an SSH kernel's cgroup there).
        let kills = if let limits = resources?.limits { limits.oomKills() } else { await provisioner.outOfMemoryKills() }
        if kills > oomKillsSeen {
            oomKillsSeen = kills
            return "out of memory (limit \(Quantity.formatBytes(memory)))"
        }
        return "\(exit)"
    }

    private func releaseResources() {
        guard let resources else { return }
        resources.ledger?.release(kernelID: id)
        resources.limits?.remove()
    }

    private func processDied(_ exit: KernelExit) async {
        guard lifecycle.state == .running else { return }
        let why = await deathReason(exit)
        logger.warning("kernel died", metadata: ["status": "\(exit)", "reason": "\(why)"])
        metrics.kernelEvent("died", kernelspec: spec.name)
        guard autoRestart, consecutiveRestarts < restartLimit else {
            // Remote backends know more than an exit status (the Slurm job's final state, the host).
            let remote = await provisioner.details().isEmpty ? "" : " [\(await provisioner.describe())]"
            lifecycle.died(reason: "Kernel \(why)\(remote); restart limit reached or auto-restart disabled")
            await connection?.broadcast(await connection!.statusMessage("dead", reason: why))
            await provisioner.cleanup(restart: false)
            releaseResources()
            return
        }
        consecutiveRestarts += 1
        lifecycle.beginRestart()
        metrics.kernelEvent("restart_auto", kernelspec: spec.name)
        await connection?.holdRequests()
        if let connection { await connection.broadcast(await connection.statusMessage("restarting", reason: why)) }
        do {
            try await launchAndWait(timeout: configuration.kernelLaunchTimeout)
            lifecycle.started()
            await persist()
            if let connection { await connection.broadcast(await connection.statusMessage("starting")) }
            await connection?.releaseRequests()
            watchForDeath()
            let stable = Task { [weak self] in
                try? await Task.sleep(for: .seconds(10))
                await self?.markStable()
            }
            _ = stable
        } catch {
            lifecycle.died(reason: error.message)
            await connection?.discardHeldRequests()
            if let connection { await connection.broadcast(await connection.statusMessage("dead", reason: error.message)) }
            await stopProcess(restart: false, everReady: false)
        }
    }

    private func markStable() {
        if lifecycle.state == .running { consecutiveRestarts = 0 }
    }

    public func interrupt() async throws(GatewayError) {
        guard lifecycle.state == .running || lifecycle.state == .starting else {
            throw GatewayError(.conflict, "Kernel \(id) is \(lifecycle.restState ?? "busy") and cannot be interrupted")
        }
        switch spec.interruptMode {
        case .signal:
            await provisioner.signal(SIGINT)
        case .message:
            _ = await connection?.sendOwn(type: "interrupt_request", content: Array("{}".utf8), on: .control)
        }
    }

    /// Restart in place: same id, same ports and key, WebSockets stay open. Clients are
    /// told `restarting` and then `starting` (jupyter_server#247 asks for exactly this).
    func restart() async throws(GatewayError) {
        guard lifecycle.beginRestart() else {
            throw GatewayError(.conflict, "Kernel \(id) is \(lifecycle.restState ?? "busy") and cannot be restarted now")
        }
        watcher?.cancel()
        metrics.kernelEvent("restart_request", kernelspec: spec.name)
        await connection?.holdRequests()
        if let connection { await connection.broadcast(await connection.statusMessage("restarting")) }
        await stopProcess(restart: true)
        do {
            try await launchAndWait(timeout: configuration.kernelLaunchTimeout)
        } catch {
            lifecycle.died(reason: error.message)
            await connection?.discardHeldRequests()
            if let connection { await connection.broadcast(await connection.statusMessage("dead", reason: error.message)) }
            await stopProcess(restart: false, everReady: false)
            throw error
        }
        lifecycle.started()
        await persist()
        if let connection { await connection.broadcast(await connection.statusMessage("starting")) }
        await connection?.releaseRequests()
        consecutiveRestarts = 0
        watchForDeath()
    }

    /// Lets go of the kernel without stopping it: the gateway is exiting and its successor
    /// will re-attach (session persistence). Sockets and WebSockets close; the process runs on.
    func detach() async {
        guard lifecycle.beginTermination() else { return }
        watcher?.cancel()
        await connection?.close()
        await provisioner.release()
    }

    /// Stops the kernel for good and releases everything it held.
    func shutdown() async {
        guard lifecycle.beginTermination() else {
            // Already dead (restart limit reached): the process is gone, but its clients and
            // sockets are still open and must be released too.
            if lifecycle.isDead { await connection?.close() }
            return
        }
        watcher?.cancel()
        await stopProcess(restart: false)
        lifecycle.died(reason: "shut down")
    }

    /// jupyter_client's shutdown: `shutdown_request` on control, wait, SIGTERM, wait, SIGKILL.
    /// A kernel that never answered `kernel_info` (`everReady: false`) cannot act on a
    /// `shutdown_request` either: it gets SIGTERM at once and at most a second of grace, so a
    /// failed start answers promptly (EG: SIGTERM, ~5 s of polls, SIGKILL).
    private func stopProcess(restart: Bool, everReady: Bool = true) async {
        let provisioner = self.provisioner
        if await provisioner.isAlive() {
            var wait = configuration.shutdownWaitTime
            if everReady {
                let content = restart ? #"{"restart":true}"# : #"{"restart":false}"#
                _ = await connection?.sendOwn(type: "shutdown_request", content: Array(content.utf8), on: .control)
            } else {
                wait = min(wait, .seconds(1))
            }
            var gone = false
            if everReady { gone = await exited(within: wait) }
            if !gone {
                await provisioner.terminate()
                if await !exited(within: wait) {
                    await provisioner.kill()
                    _ = await exited(within: .seconds(5))
                }
            }
        }
        if !restart {
            await connection?.close()
            lastActivityFallback = Date()
        }
        await provisioner.cleanup(restart: restart)
        if !restart { releaseResources() }
    }

    private func exited(within timeout: Duration) async -> Bool {
        let provisioner = self.provisioner
        return await firstResult([
            { @Sendable in _ = await provisioner.waitForExit(); return true },
            { @Sendable in try? await Task.sleep(for: timeout); return false },
        ])
    }
}

/// A kernel's granted resources, the ledger to give them back to (nil where the backend admits,
/// as Slurm does), and the local limits that enforce them (nil for backends that enforce on
/// their own side).
public struct KernelResources: Sendable {
    public let grant: ResourceLedger.Grant
    public let ledger: ResourceLedger?
    public let limits: LocalResourceLimits?
}
