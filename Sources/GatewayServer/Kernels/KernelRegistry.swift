import Foundation
import JupyterProtocol
import Logging
import Provisioning

/// All kernels of the gateway, by id.
public actor KernelRegistry {
    public nonisolated let configuration: GatewayConfiguration
    /// The settings SIGHUP can change (limits and user lists), as last reloaded.
    public private(set) var current: GatewayConfiguration
    public nonisolated let specs: KernelSpecStore
    public nonisolated let metrics: GatewayMetrics
    /// The gateway host's capacity and the local kernels' grants.
    public nonisolated let ledger: ResourceLedger
    /// Capacity and grants of SSH hosts, for placement by free capacity.
    nonisolated let hostLedgers: HostLedgers
    private nonisolated let readinessCache = CachedValue<[BackendCheck]>()
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
    /// Session persistence, when on.
    private let sessions: KernelSessionStore?
    private static let maxCulledRemembered = 10_000
    /// Shared by remote kernels: launcher response listener, SSH control masters.
    public nonisolated let remote: RemoteServices

    public init(configuration: GatewayConfiguration, specs: KernelSpecStore, logger: Logger,
                environment: [String: String] = ProcessInfo.processInfo.environment,
                metrics: GatewayMetrics = GatewayMetrics()) {
        self.configuration = configuration
        self.current = configuration
        self.specs = specs
        self.metrics = metrics
        self.ledger = ResourceLedger(capacity: ResourceLedger.discover(environment: environment, logger: logger),
                                     gpuSharing: configuration.gpuSharing)
        self.hostLedgers = HostLedgers(configured: configuration.remoteHostResources, gpuSharing: configuration.gpuSharing)
        if configuration.sessionPersistence {
            let root = configuration.persistenceRoot ?? (configuration.runtimeDirectory + "/sessions")
            sessions = KernelSessionStore(directory: root, logger: logger)
        } else {
            sessions = nil
        }
        self.logger = logger
        self.gatewayEnvironment = environment
        self.remote = RemoteServices(configuration: configuration.remote, runtimeDirectory: configuration.runtimeDirectory, logger: logger)
    }

    /// Kernelspecs naming a process proxy Ganymede does not provide; the executable refuses to
    /// start while there are any.
    public nonisolated func unsupportedKernelSpecs() -> [String] {
        ProvisionerCatalog.problems(in: specs.all)
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

    /// Applies a re-read configuration (SIGHUP): kernelspecs, kernel limits and the user
    /// lists. Everything else (ports, TLS, auth token, persistence) needs a restart.
    /// Connections and running kernels are untouched.
    public func reload(_ new: GatewayConfiguration) -> [String] {
        current.maxKernels = new.maxKernels
        current.maxKernelsPerUser = new.maxKernelsPerUser
        current.authorizedUsers = new.authorizedUsers
        current.unauthorizedUsers = new.unauthorizedUsers
        current.kernelSpecDirectories = new.kernelSpecDirectories
        current.resourceProfiles = new.resourceProfiles
        current.maxResourcesPerUser = new.maxResourcesPerUser
        current.queueResourceRequests = new.queueResourceRequests
        current.allowCustomResources = new.allowCustomResources
        let names = specs.reload(configuration: new)
        logger.notice("configuration reloaded", metadata: [
            "kernelspecs": "\(names.joined(separator: ","))", "max_kernels": "\(new.maxKernels.map(String.init) ?? "none")",
            "max_kernels_per_user": "\(new.maxKernelsPerUser.map(String.init) ?? "none")",
        ])
        return names
    }

    /// Backend readiness for the loaded kernelspecs (none when every kernelspec is local).
    /// Results are kept for five seconds: probes come often and each costs a TCP connect per host.
    public nonisolated func backendReadiness() async -> [BackendCheck] {
        var sshHosts: Set<String> = []
        var slurm = false
        for spec in specs.all.values {
            switch try? ProvisionerCatalog.kind(for: spec) {
            case .ssh?:
                sshHosts.formUnion(SSHProvisioner.candidateHosts(config: spec.processProxy?["config"], configuration: remote.configuration))
            case .slurm?: slurm = true
            default: break
            }
        }
        guard !sshHosts.isEmpty || slurm else { return [] }
        let hosts = sshHosts.sorted(), withSlurm = slurm
        return await readinessCache.value(maxAge: .seconds(5)) { [remote] in
            await remote.readiness(sshHosts: hosts, slurm: withSlurm)
        }
    }

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
        try ProvisionerCatalog.validate(clientEnv: clientEnv)
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
        try checkKernelLimits(username)
        try KernelAuthorization.checkStart(user: username, spec: spec, configuration: current)
        var env = KernelEnvironment.build(clientEnv: clientEnv, gatewayEnv: gatewayEnvironment, configuration: configuration,
                                          spec: spec, kernelID: id, username: username)
        try ensureRuntimeDirectory()
        var kernelLogger = logger
        kernelLogger[metadataKey: "kernel_id"] = "\(id)"
        let provisioner = try self.provisioner(for: spec, logger: kernelLogger)
        let (launchSpec, resources) = try await admitResourcesQueued(id: id, clientEnv: clientEnv, spec: spec, env: &env,
                                                                     kind: try ProvisionerCatalog.kind(for: spec),
                                                                     username: username, timeout: timeout)
        var request = LaunchRequest(kernelID: id, spec: launchSpec, environment: env, runtimeDirectory: configuration.runtimeDirectory,
                                    workingDirectory: clientEnv?["KERNEL_WORKING_DIR"].flatMap { Self.existingDirectory($0) })
        request.launchTimeout = timeout
        request.resources = resources?.grant.request
        let kernel = ManagedKernel(id: id, spec: spec, username: username, provisioner: provisioner, request: request,
                                   configuration: configuration, metrics: metrics, logger: logger, resources: resources)
        pending.insert(id)
        defer { pending.remove(id) }
        kernelLogger.info("starting kernel", metadata: ["kernelspec": "\(spec.name)", "user": "\(username)"])
        // Registered before it is ready (and before any suspension since the limit checks), so
        // concurrent starts count it and a gateway shutdown meanwhile stops it too.
        kernels[id] = kernel
        if let sessions {
            await kernel.setOnLaunched(clientEnv: clientEnv) { record in sessions.save(record) }
        }
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

    /// EG's limits (`RemoteMappingKernelManager._enforce_kernel_limits`), with its texts and reason
    /// "Forbidden". Kernels being started count (they are registered before their first await).
    private func checkKernelLimits(_ username: String) throws(GatewayError) {
        if let max = current.maxKernels, kernels.count >= max {
            let n = kernels.count
            throw GatewayError(.forbidden, "A max kernels limit has been set to \(max) and there are currently \(n) active and pending \(n == 1 ? "kernel" : "kernels").")
        }
        let userCount = kernels.values.filter { $0.username == username }.count
        if let max = current.maxKernelsPerUser, userCount >= max {
            throw GatewayError(.forbidden, "A max kernels per user limit has been set to \(max) and user '\(username)' currently has \(userCount) active and pending \(userCount == 1 ? "kernel" : "kernels").")
        }
    }

    /// Starts waiting for capacity (`queue_resource_requests`), for `GET /api/resources`.
    public private(set) var queuedStarts = 0

    /// `admitResources`, and with `queue_resource_requests` a start that does not fit waits for a
    /// kernel to release its resources, up to its launch timeout, instead of failing at once.
    /// Every wake re-checks the kernel limits, which other starts may have used meanwhile.
    private func admitResourcesQueued(id: String, clientEnv: [String: String]?, spec: KernelSpec, env: inout [String: String],
                                      kind: ProvisionerCatalog.Kind, username: String,
                                      timeout: Duration) async throws(GatewayError) -> (KernelSpec, KernelResources?) {
        let began = ContinuousClock.now
        let deadline = began + timeout
        let policy = ResourcePolicy(profiles: current.resourceProfiles, allowCustom: current.allowCustomResources)
        let wanted = try policy.request(env: clientEnv, spec: spec)
        let placement = try await sshPlacementHosts(wanted: wanted, clientEnv: clientEnv, spec: spec, kind: kind)
        while true {
            let generation = placement.isEmpty ? ledger.releaseGeneration : hostLedgers.releaseGeneration(placement)
            let outcome: Result<(KernelSpec, KernelResources?), GatewayError>
            do {
                outcome = .success(try admitResources(id: id, wanted: wanted, spec: spec, env: &env, kind: kind,
                                                      username: username, placement: placement))
            } catch {
                outcome = .failure(error)
            }
            switch outcome {
            case .success(let admitted):
                return admitted
            case .failure(let error):
                guard error.reason == "Insufficient resources", current.queueResourceRequests else { throw error }
                guard ContinuousClock.now < deadline else {
                    throw GatewayError(.serviceUnavailable, reason: error.reason,
                                       error.message + " Waited \(Int((ContinuousClock.now - began).seconds)) s in the queue (the launch timeout).")
                }
                logger.info("start queued for resources", metadata: ["kernel_id": "\(id)", "reason": "\(error.message)"])
                queuedStarts += 1
                if placement.isEmpty {
                    await ledger.waitForRelease(after: generation, until: deadline)
                } else {
                    await hostLedgers.waitForRelease(placement, after: generation, until: deadline)
                }
                queuedStarts -= 1
                guard !shuttingDown else { throw GatewayError(.serviceUnavailable, "The gateway is shutting down") }
                try checkKernelLimits(username)
            }
        }
    }

    /// SSH hosts the gateway places a kernel on itself (by free capacity): when the kernel asks for
    /// resources, or when `EG_LOAD_BALANCING_ALGORITHM=free-capacity`. Empty otherwise (the SSH
    /// provisioner picks with EG's algorithms). Hosts' capacities are found here if not yet known.
    private func sshPlacementHosts(wanted: ResourceRequest, clientEnv: [String: String]?, spec: KernelSpec,
                                   kind: ProvisionerCatalog.Kind) async throws(GatewayError) -> [String] {
        guard kind == .ssh, !wanted.isEmpty || remote.configuration.loadBalancing == .freeCapacity else { return [] }
        var hosts = SSHProvisioner.candidateHosts(config: spec.processProxy?["config"], configuration: remote.configuration)
        if let asked = clientEnv?["KERNEL_REMOTE_HOST"], !asked.isEmpty { hosts = [asked] }
        let problems = await hostLedgers.ensure(hosts, remote: remote, logger: logger)
        let usable = hosts.filter { problems[$0] == nil }
        guard !usable.isEmpty else {
            throw GatewayError(.serviceUnavailable, reason: "Insufficient resources",
                               "No SSH host's capacity is known: " + hosts.map { "\($0): \(problems[$0] ?? "?")" }.joined(separator: "; "))
        }
        return usable
    }

    /// Admits `wanted` where the kernel will run.
    ///
    /// - Local kernels: against this host's capacity (503 naming what is short), with GPUs
    ///   assigned (CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES) and the argv wrapped so the
    ///   kernel's cgroup limits apply from its first instruction.
    /// - SSH kernels placed by the gateway (`placement`): on the host with the most free room
    ///   (`placeOnSSHHost`); the remote shell enforces the limits there.
    /// - Other SSH and Slurm kernels: the grant travels with the launch request; Slurm admits and
    ///   places (`--cpus-per-task`, `--mem`, `--gres=gpu:N`, the profile's partition).
    private func admitResources(id: String, wanted: ResourceRequest, spec: KernelSpec, env: inout [String: String],
                                kind: ProvisionerCatalog.Kind, username: String,
                                placement: [String]) throws(GatewayError) -> (KernelSpec, KernelResources?) {
        if kind == .local, !ledger.capacity.gpus.isEmpty {
            // Exclusive assignment: a kernel sees only the devices it was given (none unless asked).
            env["CUDA_VISIBLE_DEVICES"] = ""
            env["NVIDIA_VISIBLE_DEVICES"] = "none"
        }
        if !placement.isEmpty {
            try checkUserMaximum(username, adding: wanted)
            return try placeOnSSHHost(id: id, wanted: wanted, hosts: placement, spec: spec, env: &env)
        }
        guard !wanted.isEmpty else { return (spec, nil) }
        try checkUserMaximum(username, adding: wanted)
        guard kind == .local else {
            logger.info("resources requested from the backend", metadata: ["kernel_id": "\(id)", "resources": "\(wanted.summary)",
                                                                           "backend": "\(kind.rawValue)"])
            return (spec, KernelResources(grant: .init(request: wanted, gpuIndices: []), ledger: nil, limits: nil))
        }
        let grant = try ledger.reserve(kernelID: id, wanted)
        if !grant.gpuIndices.isEmpty {
            let devices = grant.gpuIndices.map(String.init).joined(separator: ",")
            env["CUDA_VISIBLE_DEVICES"] = devices
            env["NVIDIA_VISIBLE_DEVICES"] = devices
        }
        var launchSpec = spec
        let limits = LocalResourceLimits.prepare(kernelID: id, cpus: wanted.cpus, memoryBytes: wanted.memoryBytes,
                                                 root: configuration.cgroupRoot)
        if let limits { launchSpec.file.argv = limits.wrap(spec.file.argv) }
        logger.info("resources granted", metadata: ["kernel_id": "\(id)", "resources": "\(wanted.summary)",
                                                    "gpus": "\(grant.gpuIndices)", "mechanism": "\(limits?.mechanism.rawValue ?? "none")"])
        return (launchSpec, KernelResources(grant: grant, ledger: ledger, limits: limits))
    }

    /// Reserves the kernel on the SSH host with the most free capacity that fits it (CPUs, then
    /// memory), names that host for the provisioner (KERNEL_REMOTE_HOST) and hands the kernel its
    /// GPUs there; 503 listing each host's shortfall when none fits.
    private func placeOnSSHHost(id: String, wanted: ResourceRequest, hosts: [String], spec: KernelSpec,
                                env: inout [String: String]) throws(GatewayError) -> (KernelSpec, KernelResources?) {
        let ranked = hosts.compactMap { host in hostLedgers.ledger(host).map { (host, $0) } }.sorted { a, b in
            let (fa, fb) = (a.1.free, b.1.free)
            return (fa.cpus ?? 0, fa.memoryBytes ?? 0) > (fb.cpus ?? 0, fb.memoryBytes ?? 0)
        }
        var shortfalls: [String] = []
        for (host, hostLedger) in ranked {
            let grant: ResourceLedger.Grant
            do {
                grant = try hostLedger.reserve(kernelID: id, wanted)
            } catch {
                shortfalls.append("\(host): \(error.message)")
                continue
            }
            env["KERNEL_REMOTE_HOST"] = host
            if !hostLedger.capacity.gpus.isEmpty {
                let devices = grant.gpuIndices.map(String.init).joined(separator: ",")
                env["CUDA_VISIBLE_DEVICES"] = devices
                env["NVIDIA_VISIBLE_DEVICES"] = devices.isEmpty ? "none" : devices
            }
            logger.info("placed on SSH host by free capacity", metadata: ["kernel_id": "\(id)", "host": "\(host)",
                                                                         "resources": "\(wanted.summary)", "gpus": "\(grant.gpuIndices)"])
            return (spec, KernelResources(grant: grant, ledger: hostLedger, limits: nil))
        }
        throw GatewayError(.serviceUnavailable, reason: "Insufficient resources",
                           "No SSH host has room for \(wanted.isEmpty ? "another kernel" : wanted.summary): "
                               + shortfalls.map { $0.replacingOccurrences(of: " on this host", with: "") }.joined(separator: " | "))
    }

    /// `max_resources_per_user`: what one user's kernels may hold together, on every backend.
    private func checkUserMaximum(_ username: String, adding wanted: ResourceRequest) throws(GatewayError) {
        guard let maximum = current.maxResourcesPerUser else { return }
        var held = ResourceRequest(cpus: 0, memoryBytes: 0, gpus: 0)
        for kernel in kernels.values where kernel.username == username {
            guard let r = kernel.resources?.grant.request else { continue }
            held.cpus! += r.cpus ?? 0
            held.memoryBytes! += r.memoryBytes ?? 0
            held.gpus! += r.gpus ?? 0
        }
        func refuse(_ what: String, _ limit: String, _ inUse: String, _ asked: String) -> GatewayError {
            GatewayError(.forbidden, "A max resources per user limit has been set to \(limit) of \(what) and user '\(username)' "
                         + "holds \(inUse) in running kernels; this kernel asks for \(asked) more.")
        }
        if let max = maximum.cpus, let c = wanted.cpus, held.cpus! + c > max + 1e-9 {
            throw refuse("CPUs", Quantity.format(max), Quantity.format(held.cpus!), Quantity.format(c))
        }
        if let max = maximum.memoryBytes, let m = wanted.memoryBytes, held.memoryBytes! + m > max {
            throw refuse("memory", Quantity.formatBytes(max), Quantity.formatBytes(held.memoryBytes!), Quantity.formatBytes(m))
        }
        if let max = maximum.gpus, let g = wanted.gpus, g > 0, held.gpus! + g > max {
            throw refuse("GPUs", "\(max)", "\(held.gpus!)", "\(g)")
        }
    }

    /// Picks the backend from `metadata.process_proxy.class_name` (EG) or
    /// `metadata.kernel_provisioner.provisioner_name` (jupyter_client); see `ProvisionerCatalog`.
    func provisioner(for spec: KernelSpec, logger: Logger) throws(GatewayError) -> any KernelProvisioner {
        ProvisionerCatalog.make(try ProvisionerCatalog.kind(for: spec), spec: spec, remote: remote, logger: logger)
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

    /// The kernel if `identity` may use it; another user's kernel answers exactly as a
    /// missing one (404), so ids of other users' kernels cannot be probed.
    public func kernel(_ id: String, for identity: Identity) throws(GatewayError) -> ManagedKernel {
        let k = try kernel(id)
        guard k.mayBeUsed(by: identity) else { throw GatewayError.kernelNotFound(id) }
        return k
    }

    /// The kernel if `identity` owns it (or is an admin): deleting it and changing whom it is
    /// shared with are the owner's. A user it is shared with gets 403, anyone else 404.
    public func ownedKernel(_ id: String, for identity: Identity) throws(GatewayError) -> ManagedKernel {
        let k = try kernel(id, for: identity)
        guard k.isOwned(by: identity) else {
            throw GatewayError(.forbidden, reason: "Forbidden",
                               "Kernel \(id) is shared with you; only its owner '\(k.username)' or an admin can delete it or change its shares")
        }
        return k
    }

    /// The kernels `identity` may see: its own, those shared with it, or all for an admin.
    public func kernels(for identity: Identity) -> [ManagedKernel] {
        kernels.values.filter { $0.mayBeUsed(by: identity) }.sorted { $0.id < $1.id }
    }

    public func shutdown(_ id: String) async throws(GatewayError) {
        let kernel = try kernel(id)
        await kernel.shutdown()
        kernels.removeValue(forKey: id)
        sessions?.remove(id)
        metrics.kernelEvent("shutdown", kernelspec: kernel.spec.name)
        // A deleted kernel's buffers (replay, queues, its output's encodings) were freed just now;
        // glibc keeps freed memory in its arenas unless asked, so the gateway's RSS would stay at
        // its peak after every busy kernel.
        ProcessMemory.trim()
    }

    /// Re-attaches every kernel a previous gateway recorded (session persistence): a kernel
    /// whose process still runs gets the same id and connection back; one that ended while
    /// no gateway watched is reported (logged, counted, and its id answers 404 saying so).
    public func reattachAll() async {
        guard let sessions else { return }
        let records = sessions.loadAll()
        guard !records.isEmpty else { return }
        logger.info("re-attaching persisted kernels", metadata: ["count": "\(records.count)"])
        await withTaskGroup(of: Void.self) { group in
            for record in records {
                group.addTask { await self.reattach(record, store: sessions) }
            }
        }
    }

    private func reattach(_ record: KernelSessionRecord, store: KernelSessionStore) async {
        var kernelLogger = logger
        kernelLogger[metadataKey: "kernel_id"] = "\(record.kernelID)"
        func lost(_ why: String) {
            kernelLogger.warning("persisted kernel is gone", metadata: ["reason": "\(why)", "user": "\(record.username)"])
            store.remove(record.kernelID)
            metrics.kernelEvent("lost", kernelspec: record.kernelspec)
            remember(record.kernelID, CulledKernel(at: Date(), idle: nil, state: "dead",
                                                   note: "It ended while no gateway was running (\(why)); it was last recorded at \(Timestamp.iso8601(record.savedAt))."))
            if let file = record.handle.connectionFile { unlink(file) }
        }
        guard kernels[record.kernelID] == nil else { return }
        guard let spec = specs.spec(named: record.kernelspec) else { return lost("kernelspec '\(record.kernelspec)' no longer exists") }
        guard let provisioner = await ProvisionerCatalog.attach(record, spec: spec, remote: remote,
                                                                 runtimeDirectory: configuration.runtimeDirectory, logger: kernelLogger) else {
            let what = record.handle.extra["slurm_job_id"].map { "Slurm job \($0)" }
                ?? "\(record.handle.backend) process \(record.handle.pid.map(String.init) ?? "?")\(record.handle.host.map { " on \($0)" } ?? "")"
            return lost("\(what) not running")
        }
        let env = KernelEnvironment.build(clientEnv: record.clientEnv, gatewayEnv: gatewayEnvironment, configuration: configuration,
                                          spec: spec, kernelID: record.kernelID, username: record.username)
        let request = LaunchRequest(kernelID: record.kernelID, spec: spec, environment: env,
                                    runtimeDirectory: configuration.runtimeDirectory)
        let kernel = ManagedKernel(id: record.kernelID, spec: spec, username: record.username, provisioner: provisioner,
                                   request: request, configuration: configuration, metrics: metrics, logger: logger)
        await kernel.setOnLaunched(clientEnv: record.clientEnv) { r in store.save(r) }
        await kernel.restoreShares(Set(record.sharedWith ?? []))
        kernels[record.kernelID] = kernel
        do {
            try await kernel.attach(info: record.connection, timeout: configuration.kernelInfoTimeout)
            kernelLogger.info("re-attached kernel", metadata: ["user": "\(record.username)", "backend": "\(record.handle.backend)",
                                                               "pid": "\(record.handle.pid ?? 0)"])
            metrics.kernelEvent("reattached", kernelspec: spec.name)
        } catch {
            kernels.removeValue(forKey: record.kernelID)
            await provisioner.kill()
            lost("it did not answer: \(error.message)")
        }
    }

    /// Sets the scrape-time gauges from the kernels as they are now.
    public func sampleMetrics() async {
        var samples: [GatewayMetrics.KernelSample] = []
        for kernel in kernels.values {
            samples.append(await kernel.metricsSample())
        }
        metrics.update(kernels: samples)
        let capacity = ledger.capacity, used = ledger.inUse
        metrics.update(capacity: (capacity.cpus, capacity.memoryBytes, capacity.gpus.count),
                       allocated: (used.cpus ?? 0, used.memoryBytes ?? 0, used.gpus ?? 0))
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
            sessions?.remove(kernel.id)
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
        if sessions != nil && configuration.keepKernelsOnExit {
            // Their records stay: the next gateway with the same persistence root re-attaches.
            logger.info("leaving kernels running for re-attach", metadata: ["count": "\(all.count)"])
            await withTaskGroup(of: Void.self) { group in
                for kernel in all { group.addTask { await kernel.detach() } }
            }
            kernels.removeAll()
            await remote.shutdown()
            return
        }
        logger.info("shutting down all kernels", metadata: ["count": "\(all.count)"])
        await withTaskGroup(of: Void.self) { group in
            for kernel in all {
                group.addTask {
                    // Connected clients learn why their kernel goes away before the socket closes.
                    await kernel.announce("dead", reason: "the gateway is shutting down")
                    await kernel.shutdown()
                }
            }
        }
        for kernel in all { sessions?.remove(kernel.id) }
        kernels.removeAll()
        await remote.shutdown()
    }
}

/// What the registry remembers of a culled kernel.
struct CulledKernel: Sendable, CustomStringConvertible {
    let at: Date
    /// Seconds without activity; nil for a dead kernel culled as such.
    let idle: Double?
    let state: String
    /// Overrides the culling text (kernels lost across a gateway restart).
    var note: String? = nil

    var description: String {
        if let note { return note }
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
