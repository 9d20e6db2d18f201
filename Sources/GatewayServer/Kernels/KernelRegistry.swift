import Foundation
import JupyterProtocol
import Logging
import Provisioning

/// All kernels of the gateway, by id.
public actor KernelRegistry {
    public nonisolated let configuration: GatewayConfiguration
    public nonisolated let specs: KernelSpecStore
    public nonisolated let metrics: GatewayMetrics
    private var kernels: [String: ManagedKernel] = [:]
    /// Ids being started: counted so a duplicate KERNEL_ID cannot race in.
    private var pending: Set<String> = []
    private let logger: Logger
    private let gatewayEnvironment: [String: String]
    private var shuttingDown = false
    /// Seeding and prespawned kernels (KernelStartHook.swift); nil: plain starts.
    var startHook: (any KernelStartHook)?
    /// Kernels shut down by the culler, remembered so their ids answer 404 with the reason
    /// (a client that reconnects hours later learns why, nb2kg#31) instead of a bare 404.
    private var culled: [String: CulledKernel] = [:]
    private static let maxCulledRemembered = 10_000

    public init(configuration: GatewayConfiguration, specs: KernelSpecStore, logger: Logger,
                environment: [String: String] = ProcessInfo.processInfo.environment,
                metrics: GatewayMetrics = GatewayMetrics()) {
        self.configuration = configuration
        self.specs = specs
        self.metrics = metrics
        self.logger = logger
        self.gatewayEnvironment = environment
    }

    public func kernel(_ id: String) throws(GatewayError) -> ManagedKernel {
        guard let kernel = kernels[id] else {
            if let gone = culled[id], Date().timeIntervalSince(gone.at) < configuration.culledKernelMemory.seconds {
                throw GatewayError(.notFound, "Kernel does not exist: \(id). \(gone.description)")
            }
            throw .kernelNotFound(id)
        }
        return kernel
    }

    public func list() -> [ManagedKernel] {
        kernels.values.sorted { $0.id < $1.id }
    }

    public var count: Int { kernels.count }

    /// True once the gateway has begun stopping (no new starts).
    public var isShuttingDown: Bool { shuttingDown }

    /// Starts a kernel and returns once it answers `kernel_info_request`.
    public func start(name: String?, clientEnv: [String: String]?) async throws(GatewayError) -> ManagedKernel {
        let began = ContinuousClock.now
        let specName = (name?.isEmpty == false ? name! : configuration.defaultKernelName)
        do {
            let kernel = try await startKernel(name: name, clientEnv: clientEnv)
            metrics.kernelStarted(kernelspec: kernel.spec.name, provisioner: kernel.provisionerName,
                                  after: ContinuousClock.now - began)
            return kernel
        } catch {
            metrics.kernelStartFailed(kernelspec: specs.spec(named: specName)?.name ?? "unknown", cause: Self.cause(of: error))
            throw error
        }
    }

    /// A short, bounded label for why a start failed (metrics).
    static func cause(of error: GatewayError) -> String {
        switch error.status.code {
        case 400: return "bad_request"
        case 404: return "not_found"
        case 409: return "conflict"
        case 503: return "unavailable"
        case 501: return "unsupported"
        case 403: return error.message.hasPrefix("A max kernels") ? "limit" : "unauthorized"
        default:
            switch error.reason {
            case "Kernel launch timeout": return "timeout"
            case "Kernel died during startup": return "died"
            default: return "launch"
            }
        }
    }

    private func startKernel(name: String?, clientEnv: [String: String]?) async throws(GatewayError) -> ManagedKernel {
        guard !shuttingDown else { throw GatewayError(.serviceUnavailable, "The gateway is shutting down") }
        let specName = (name?.isEmpty == false ? name! : configuration.defaultKernelName)
        guard let spec = specs.spec(named: specName) else {
            throw GatewayError(.notFound, reason: "Not Found", "No such kernel: kernelspec '\(specName)' not found")
        }
        var id = UUID().uuidString.lowercased()
        if let requested = clientEnv?["KERNEL_ID"] {
            guard let uuid = UUID(uuidString: requested) else {
                throw .badRequest("KERNEL_ID '\(requested.prefix(64))' is not a UUID")
            }
            id = uuid.uuidString.lowercased()
            guard kernels[id] == nil, !pending.contains(id) else {
                throw GatewayError(.conflict, "A kernel with id \(id) already exists")
            }
        }
        let timeout = Self.launchTimeout(clientEnv?["KERNEL_LAUNCH_TIMEOUT"]) ?? configuration.kernelLaunchTimeout
        let username = clientEnv?["KERNEL_USERNAME"] ?? configuration.gatewayUsername
        // Kernels being started are already in `kernels` (registered before the first await
        // below), so concurrent POSTs cannot race past the limits (EG#855, KG#341).
        // EG's texts (`RemoteMappingKernelManager._enforce_kernel_limits`), reason "Forbidden".
        if let max = configuration.maxKernels, kernels.count >= max {
            let n = kernels.count
            throw GatewayError(.forbidden, "A max kernels limit has been set to \(max) and there are currently \(n) active and pending \(n == 1 ? "kernel" : "kernels").")
        }
        let userCount = kernels.values.filter { $0.username == username }.count
        if let max = configuration.maxKernelsPerUser, userCount >= max {
            throw GatewayError(.forbidden, "A max kernels per user limit has been set to \(max) and user '\(username)' currently has \(userCount) active and pending \(userCount == 1 ? "kernel" : "kernels").")
        }
        try KernelAuthorization.checkStart(user: username, spec: spec, configuration: configuration)
        let env = KernelEnvironment.build(clientEnv: clientEnv, gatewayEnv: gatewayEnvironment, configuration: configuration,
                                          spec: spec, kernelID: id, username: username)
        try ensureRuntimeDirectory()
        var kernelLogger = logger
        kernelLogger[metadataKey: "kernel_id"] = "\(id)"
        let provisioner = try Self.provisioner(for: spec, logger: kernelLogger)
        let request = LaunchRequest(kernelID: id, spec: spec, environment: env, runtimeDirectory: configuration.runtimeDirectory,
                                    workingDirectory: clientEnv?["KERNEL_WORKING_DIR"].flatMap { Self.existingDirectory($0) })
        let kernel = ManagedKernel(id: id, spec: spec, username: username, provisioner: provisioner, request: request,
                                   configuration: configuration, metrics: metrics, logger: logger)
        pending.insert(id)
        defer { pending.remove(id) }
        kernelLogger.info("starting kernel", metadata: ["kernelspec": "\(spec.name)", "user": "\(username)"])
        // Registered before it is ready, so a gateway shutdown meanwhile stops it too.
        kernels[id] = kernel
        do {
            try await kernel.start(timeout: timeout)
        } catch {
            kernels.removeValue(forKey: id)
            kernelLogger.error("kernel failed to start", metadata: ["error": "\(error.message)"])
            throw error
        }
        if shuttingDown {
            await kernel.shutdown()
            kernels.removeValue(forKey: id)
            throw GatewayError(.serviceUnavailable, "The gateway is shutting down")
        }
        kernelLogger.info("kernel started")
        return kernel
    }

    /// Picks the backend from `metadata.process_proxy.class_name` (EG) or
    /// `metadata.kernel_provisioner.provisioner_name` (jupyter_client).
    static func provisioner(for spec: KernelSpec, logger: Logger) throws(GatewayError) -> any KernelProvisioner {
        let className = spec.processProxy?["class_name"]?.stringValue
        let provisionerName = spec.file.metadata?["kernel_provisioner"]?["provisioner_name"]?.stringValue
        let local: Set<String> = [
            "enterprise_gateway.services.processproxies.processproxy.LocalProcessProxy", "local-provisioner",
        ]
        if let name = className ?? provisionerName, !local.contains(name) {
            throw GatewayError(.notImplemented, reason: "Unsupported provisioner",
                               "Kernelspec '\(spec.name)' asks for '\(name)', which this gateway does not support yet")
        }
        return LocalProvisioner(logger: logger)
    }

    static func launchTimeout(_ raw: String?) -> Duration? {
        guard let raw, let seconds = Double(raw), seconds > 0, seconds.isFinite else { return nil }
        return .milliseconds(Int64(seconds * 1000))
    }

    static func existingDirectory(_ path: String) -> String? {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue ? path : nil
    }

    private func ensureRuntimeDirectory() throws(GatewayError) {
        let path = configuration.runtimeDirectory
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: path)
        } catch {
            throw GatewayError(.internalServerError, reason: "Runtime directory", "Cannot create \(path): \(error)")
        }
    }

    public func shutdown(_ id: String) async throws(GatewayError) {
        let kernel = try kernel(id)
        await kernel.shutdown()
        kernels.removeValue(forKey: id)
        metrics.kernelEvent("shutdown", kernelspec: kernel.spec.name)
    }

    /// Sets the scrape-time gauges from the kernels as they are now.
    public func sampleMetrics() async {
        var samples: [GatewayMetrics.KernelSample] = []
        for kernel in kernels.values {
            samples.append(await kernel.metricsSample())
        }
        metrics.update(kernels: samples)
    }

    /// One pass of the idle culler (jupyter_server `cull_kernel_if_idle`): dead kernels go,
    /// and so do kernels idle beyond their timeout unless busy or connected (by configuration).
    /// Returns the ids culled.
    @discardableResult
    public func cullIdleKernels(now: Date = Date()) async -> [String] {
        var victims: [(ManagedKernel, CulledKernel)] = []
        for kernel in kernels.values where !pending.contains(kernel.id) {
            let activity = await kernel.activity()
            if activity.dead {
                victims.append((kernel, CulledKernel(at: now, idle: nil, state: "dead")))
                continue
            }
            let timeout = kernel.cullIdleTimeout(default: configuration.cullIdleTimeout)
            guard timeout > .zero else { continue }
            let idle = now.timeIntervalSince(activity.lastActivity)
            let isIdleTime = idle > timeout.seconds
            let isIdleExecute = configuration.cullBusy || activity.state != "busy"
            let isIdleConnected = configuration.cullConnected || activity.connections == 0
            if isIdleTime && isIdleExecute && isIdleConnected {
                victims.append((kernel, CulledKernel(at: now, idle: idle, state: activity.state)))
            }
        }
        for (kernel, record) in victims {
            var kernelLogger = logger
            kernelLogger[metadataKey: "kernel_id"] = "\(kernel.id)"
            kernelLogger.warning("culling kernel", metadata: ["kernelspec": "\(kernel.spec.name)", "reason": "\(record.description)"])
            await kernel.cull(reason: record.description)
            metrics.kernelEvent("culled", kernelspec: kernel.spec.name)
            kernels.removeValue(forKey: kernel.id)
            remember(kernel.id, record)
        }
        return victims.map { $0.0.id }
    }

    private func remember(_ id: String, _ record: CulledKernel) {
        let horizon = Date().addingTimeInterval(-configuration.culledKernelMemory.seconds)
        if culled.count >= Self.maxCulledRemembered {
            culled = culled.filter { $0.value.at > horizon }
            if culled.count >= Self.maxCulledRemembered, let oldest = culled.min(by: { $0.value.at < $1.value.at }) {
                culled.removeValue(forKey: oldest.key)
            }
        }
        culled[id] = record
    }

    /// Stops every kernel (gateway exit). Kernels never outlive the gateway.
    public func shutdownAll() async {
        shuttingDown = true
        let all = Array(kernels.values)
        logger.info("shutting down all kernels", metadata: ["count": "\(all.count)"])
        await withTaskGroup(of: Void.self) { group in
            for kernel in all { group.addTask { await kernel.shutdown() } }
        }
        kernels.removeAll()
    }
}

/// What the registry remembers of a culled kernel.
struct CulledKernel: Sendable, CustomStringConvertible {
    let at: Date
    /// Seconds without activity; nil for a dead kernel culled as such.
    let idle: Double?
    let state: String

    var description: String {
        let when = Timestamp.iso8601(at)
        if let idle {
            return "It was culled at \(when) after \(Int(idle)) s of inactivity (execution state \(state))."
        }
        return "It was culled at \(when) because it was dead."
    }
}

extension Duration {
    /// Whole and fractional seconds, for arithmetic with `Date`.
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
