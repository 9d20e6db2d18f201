import Provisioning
import ArgumentParser
import Foundation
import GatewayServer
import Hummingbird
import Logging
import ServiceLifecycle
import UnixSignals

/// `ganymede`: a Jupyter kernel gateway compatible with Enterprise Gateway and Kernel Gateway.
///
/// Every setting can come from a flag, an environment variable or the config file, in that
/// order of precedence. Environment names: `GANYMEDE_*` first, then EG's `EG_*`, then KG's `KG_*`.
@main
struct Ganymede: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ganymede",
        abstract: "A Jupyter kernel gateway (Enterprise Gateway / Kernel Gateway compatible REST and WebSocket API).",
        discussion: Settings.helpText,
        version: ganymedeVersion
    )

    @Option(help: "IP address to listen on. Env: EG_IP, KG_IP. Default 127.0.0.1.")
    var ip: String?
    @Option(help: "Port to listen on (0 = any free port). Env: EG_PORT, KG_PORT. Default 8888.")
    var port: Int?
    @Option(name: .customLong("base-url"), help: "URL prefix of every route. Env: EG_BASE_URL, KG_BASE_URL. Default /.")
    var baseURL: String?
    @Option(name: .customLong("auth-token"), help: "Token clients must present. Env: EG_AUTH_TOKEN, KG_AUTH_TOKEN. Default: none.")
    var authToken: String?
    @Option(name: .customLong("kernelspec-dir"), help: "Extra directory holding <name>/kernel.json (repeatable). Env: GANYMEDE_KERNELSPEC_DIRS (colon-separated).")
    var kernelSpecDirs: [String] = []
    @Option(name: .customLong("default-kernel-name"), help: "Kernelspec used when a request names none. Env: EG_DEFAULT_KERNEL_NAME, KG_DEFAULT_KERNEL_NAME. Default python3.")
    var defaultKernelName: String?
    @Option(name: .customLong("list-kernels"), help: "Allow GET /api/kernels and /api/sessions (true|false). Env: EG_LIST_KERNELS, KG_LIST_KERNELS. Default true.")
    var listKernels: String?
    @Option(name: .customLong("client-envs"), help: "Comma list of non-KERNEL_ env names clients may set; * = all. Env: EG_CLIENT_ENVS (or EG_ENV_WHITELIST, KG_ENV_WHITELIST).")
    var clientEnvs: String?
    @Option(name: .customLong("inherited-envs"), help: "Comma list of gateway env names copied into kernels. Env: EG_INHERITED_ENVS (or EG_ENV_PROCESS_WHITELIST, KG_ENV_PROCESS_WHITELIST).")
    var inheritedEnvs: String?
    @Option(name: .customLong("allow-origin"), help: "Access-Control-Allow-Origin. Env: EG_ALLOW_ORIGIN, KG_ALLOW_ORIGIN. Also EG_ALLOW_CREDENTIALS, EG_ALLOW_HEADERS, EG_ALLOW_METHODS, EG_EXPOSE_HEADERS, EG_MAX_AGE.")
    var allowOrigin: String?
    @Option(name: .customLong("http-idle-timeout"), help: "Seconds a connection may take to send a request head or stay idle between requests; 0 disables. Default 60.")
    var httpIdleTimeout: Double?
    @Option(name: .customLong("max-websockets-per-user"), help: "Open kernel WebSockets per user (429 beyond). Default: no limit.")
    var maxWebSocketsPerUser: Int?
    @Option(name: .customLong("ws-ping-interval"), help: "Seconds between WebSocket pings; 0 disables. Env: EG_WS_PING_INTERVAL_SECS, KG_WS_PING_INTERVAL_SECS. Default 30.")
    var wsPingInterval: Double?
    @Option(name: .customLong("kernel-info-timeout"), help: "Seconds a WebSocket connect waits for kernel_info_reply. Env: EG_KERNEL_INFO_TIMEOUT. Default 60.")
    var kernelInfoTimeout: Double?
    @Option(name: .customLong("kernel-launch-timeout"), help: "Default seconds to wait for a kernel to start; a request's KERNEL_LAUNCH_TIMEOUT wins. Env: EG_KERNEL_LAUNCH_TIMEOUT. Default 40.")
    var kernelLaunchTimeout: Double?
    @Option(name: .customLong("max-kernels"), help: "Most kernels at once, starts in progress included (403 beyond). Env: EG_MAX_KERNELS, KG_MAX_KERNELS. Default: no limit.")
    var maxKernels: Int?
    @Option(name: .customLong("max-kernels-per-user"), help: "Most kernels per KERNEL_USERNAME. Env: EG_MAX_KERNELS_PER_USER. Default: no limit.")
    var maxKernelsPerUser: Int?
    @Option(name: .customLong("cull-idle-timeout"), help: "Seconds of inactivity after which a kernel is culled; 0 = never (a kernelspec's metadata.cull_idle_timeout wins). Env: EG_CULL_IDLE_TIMEOUT. Default 0.")
    var cullIdleTimeout: Double?
    @Option(name: .customLong("cull-interval"), help: "Seconds between culler passes. Env: EG_CULL_INTERVAL. Default 300.")
    var cullInterval: Double?
    @Option(name: .customLong("cull-connected"), help: "Also cull kernels with open WebSockets (true|false). Env: EG_CULL_CONNECTED. Default false.")
    var cullConnected: String?
    @Option(name: .customLong("cull-busy"), help: "Also cull busy kernels (true|false). Env: EG_CULL_BUSY. Default false.")
    var cullBusy: String?
    @Option(name: .customLong("authorized-users"), help: "Comma list of KERNEL_USERNAMEs allowed to start kernels; empty = everyone. Env: EG_AUTHORIZED_USERS. Default empty.")
    var authorizedUsers: String?
    @Option(name: .customLong("unauthorized-users"), help: "Comma list of KERNEL_USERNAMEs refused (403); '' = nobody. Env: EG_UNAUTHORIZED_USERS. Default root.")
    var unauthorizedUsers: String?
    @Option(name: .customLong("auto-restart"), help: "Restart kernels that die on their own (true|false; a kernelspec's metadata.auto_restart wins). Env: GANYMEDE_AUTO_RESTART. Default true.")
    var autoRestart: String?
    @Option(name: .customLong("restart-limit"), help: "Automatic restarts in a row before a kernel is declared dead. Env: GANYMEDE_RESTART_LIMIT. Default 5.")
    var restartLimit: Int?
    @Option(name: .customLong("replay-buffer-messages"), help: "Most messages kept per disconnected session for replay. Env: GANYMEDE_REPLAY_BUFFER_MESSAGES. Default 10000.")
    var replayBufferMessages: Int?
    @Option(name: .customLong("replay-buffer-bytes"), help: "Most bytes kept per disconnected session for replay. Env: GANYMEDE_REPLAY_BUFFER_BYTES. Default 16777216.")
    var replayBufferBytes: Int?
    @Option(name: .customLong("replay-buffer-ttl"), help: "Seconds a disconnected session's buffer is kept. Env: GANYMEDE_REPLAY_BUFFER_TTL. Default 600.")
    var replayBufferTTL: Double?
    @Option(name: .customLong("metrics-public"), help: "Serve /metrics without the auth token (true|false). Env: GANYMEDE_METRICS_PUBLIC. Default false.")
    var metricsPublic: String?
    @Option(name: .customLong("status-sample-interval"), help: "Seconds between the status page's samples of kernel count and message rate (it keeps 360). Env: GANYMEDE_STATUS_SAMPLE_INTERVAL. Default 10.")
    var statusSampleInterval: Double?
    @Option(name: .customLong("certfile"), help: "PEM certificate (chain): serve HTTPS and WSS. Env: EG_CERTFILE, KG_CERTFILE.")
    var certFile: String?
    @Option(name: .customLong("keyfile"), help: "PEM private key for --certfile. Env: EG_KEYFILE, KG_KEYFILE.")
    var keyFile: String?
    @Option(name: .customLong("client-ca"), help: "PEM CA: require client certificates signed by it (mutual TLS). Env: EG_CLIENT_CA, KG_CLIENT_CA.")
    var clientCA: String?
    @Option(name: .customLong("session-persistence"), help: "Record running kernels and re-attach them after a gateway restart (true|false). Env: EG_KERNEL_SESSION_PERSISTENCE. Default false.")
    var sessionPersistence: String?
    @Option(name: .customLong("persistence-root"), help: "Directory of the kernel session records. Env: EG_PERSISTENCE_ROOT. Default <runtime-dir>/sessions.")
    var persistenceRoot: String?
    @Option(name: .customLong("keep-kernels-on-exit"), help: "With session persistence, leave kernels running when the gateway stops, for the next one to re-attach (true|false). Env: GANYMEDE_KEEP_KERNELS_ON_EXIT. Default true.")
    var keepKernelsOnExit: String?
    @Option(name: .customLong("max-client-queue-bytes"), help: "Most bytes of output queued for a WebSocket client that does not keep up; beyond, it is disconnected and its session's output kept for replay. Env: GANYMEDE_MAX_CLIENT_QUEUE_BYTES. Default 67108864.")
    var maxClientQueueBytes: Int?
    @Option(name: .customLong("runtime-dir"), help: "Directory for connection files and kernel logs (created 0700). Env: GANYMEDE_RUNTIME_DIR, JUPYTER_RUNTIME_DIR.")
    var runtimeDir: String?
    @Option(help: "YAML config file (keys as the long flag names with underscores, e.g. base_url: /gw/). Env: GANYMEDE_CONFIG.")
    var config: String?
    @Option(name: .customLong("log-level"), help: "trace|debug|info|notice|warning|error|critical. Env: EG_LOG_LEVEL, GANYMEDE_LOG_LEVEL. Default info.")
    var logLevel: String?
    @Option(name: .customLong("log-format"), help: "text|json (one JSON object per line). Env: GANYMEDE_LOG_FORMAT. Default text.")
    var logFormat: String?
    @OptionGroup(title: "Kernel Gateway modes")
    var kernelGateway: KernelGatewayOptions

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        let (c, settings) = try makeConfiguration(env: env)
        let level = Logger.Level(rawValue: (logLevel ?? settings.string("log_level", env: ["EG_LOG_LEVEL", "KG_LOG_LEVEL"]) ?? "info").lowercased()) ?? .info
        let formatName = (logFormat ?? settings.string("log_format", env: []) ?? "text").lowercased()
        guard let format = GatewayLogHandler.Format(rawValue: formatName) else {
            throw ValidationError("--log-format must be text or json, got '\(formatName)'")
        }
        let redactor = GatewayLogHandler.Redactor.fromEnvironment(env, authToken: c.authToken, sensitivePhrases: c.sensitiveEnvKeys)
        LoggingSystem.bootstrap { label in
            GatewayLogHandler(label: label, level: level, format: format, redactor: redactor)
        }
        let logger = Logger(label: "ganymede")
        if c.authToken.isEmpty && c.userTokens.isEmpty && c.jwt == nil && !["127.0.0.1", "localhost", "::1"].contains(c.ip) {
            logger.warning("listening beyond loopback without an auth token: anyone who can reach \(c.ip):\(c.port) can run code")
        }
        if c.unauthorizedUsers.contains(c.gatewayUsername) {
            logger.notice("requests without KERNEL_USERNAME run as the gateway user '\(c.gatewayUsername)', which is in the unauthorized users: they get 403 (EG's default); set KERNEL_USERNAME in requests or --unauthorized-users")
        }
        let gateway = Gateway(configuration: c, logger: logger)
        let unsupported = gateway.registry.unsupportedKernelSpecs()
        guard unsupported.isEmpty else {
            throw ValidationError("unsupported kernelspec(s):\n  " + unsupported.joined(separator: "\n  "))
        }
        let specCount = gateway.registry.specs.all.count
        let (host, base, scheme) = (c.ip, c.baseURL, c.tls == nil ? "http" : "https")
        let services = try await kernelGateway.services(settings: settings, gateway: gateway, logger: logger) { port in
            logger.info("Ganymede \(ganymedeVersion) listening on \(scheme)://\(host):\(port)\(base) with \(specCount) kernelspec(s)")
        }
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) },
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        // SIGHUP: read the flags, environment and config file again and apply what can change
        // without a restart (kernelspecs, limits, user lists); nothing is dropped.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let reloader = Task {
            for await _ in hangups {
                do {
                    let (fresh, _) = try makeConfiguration(env: env)
                    _ = await gateway.registry.reload(fresh)
                } catch {
                    logger.error("SIGHUP: configuration not reloaded", metadata: ["error": "\(error)"])
                }
            }
        }
        defer { reloader.cancel() }
        try await group.run()
    }

    /// Flags > environment > config file, read anew on SIGHUP (the file may have changed).
    func makeConfiguration(env: [String: String]) throws -> (GatewayConfiguration, Settings) {
        let file = try Settings.loadFile(config ?? env["GANYMEDE_CONFIG"])
        let settings = Settings(env: env, file: file)
        var c = GatewayConfiguration()
        c.ip = ip ?? settings.string("ip", env: ["EG_IP", "KG_IP"]) ?? c.ip
        c.port = try port ?? settings.int("port", env: ["EG_PORT", "KG_PORT"]) ?? c.port
        c.baseURL = GatewayConfiguration.normalizeBaseURL(baseURL ?? settings.string("base_url", env: ["EG_BASE_URL", "KG_BASE_URL"]) ?? "/")
        c.authToken = authToken ?? settings.string("auth_token", env: ["EG_AUTH_TOKEN", "KG_AUTH_TOKEN"]) ?? ""
        try settings.applyIdentities(to: &c)
        c.kernelSpecDirectories = kernelSpecDirs + (settings.string("kernelspec_dirs", env: [])?.split(separator: ":").map(String.init) ?? [])
        c.defaultKernelName = defaultKernelName ?? settings.string("default_kernel_name", env: ["EG_DEFAULT_KERNEL_NAME", "KG_DEFAULT_KERNEL_NAME"]) ?? c.defaultKernelName
        if let v = try listKernels.map(Settings.parseBool) ?? settings.bool("list_kernels", env: ["EG_LIST_KERNELS", "KG_LIST_KERNELS"]) {
            c.listKernels = v
        }
        c.clientEnvs = Settings.list(clientEnvs ?? settings.string("client_envs", env: ["EG_CLIENT_ENVS", "EG_ENV_WHITELIST", "KG_ENV_WHITELIST"]))
        c.inheritedEnvs = Settings.list(inheritedEnvs ?? settings.string("inherited_envs", env: ["EG_INHERITED_ENVS", "EG_ENV_PROCESS_WHITELIST", "KG_ENV_PROCESS_WHITELIST"]))
        c.sensitiveEnvKeys = Settings.list(settings.string("sensitive_env_keys", env: ["EG_SENSITIVE_ENV_KEYS"]))
        c.allowOrigin = allowOrigin ?? settings.string("allow_origin", env: ["EG_ALLOW_ORIGIN", "KG_ALLOW_ORIGIN"]) ?? ""
        c.allowCredentials = settings.string("allow_credentials", env: ["EG_ALLOW_CREDENTIALS", "KG_ALLOW_CREDENTIALS"]) ?? ""
        c.allowHeaders = settings.string("allow_headers", env: ["EG_ALLOW_HEADERS", "KG_ALLOW_HEADERS"]) ?? ""
        c.allowMethods = settings.string("allow_methods", env: ["EG_ALLOW_METHODS", "KG_ALLOW_METHODS"]) ?? ""
        c.exposeHeaders = settings.string("expose_headers", env: ["EG_EXPOSE_HEADERS", "KG_EXPOSE_HEADERS"]) ?? ""
        c.maxAge = settings.string("max_age", env: ["EG_MAX_AGE", "KG_MAX_AGE"]) ?? ""
        if let s = try wsPingInterval ?? settings.double("ws_ping_interval", env: ["EG_WS_PING_INTERVAL_SECS", "KG_WS_PING_INTERVAL_SECS"]) {
            c.wsPingInterval = .milliseconds(Int64(max(0, s) * 1000))
        }
        if let s = try httpIdleTimeout ?? settings.double("http_idle_timeout", env: []) {
            c.httpIdleTimeout = .milliseconds(Int64(max(0, s) * 1000))
        }
        if let n = try maxWebSocketsPerUser ?? settings.int("max_websockets_per_user", env: []) {
            guard n > 0 else { throw ValidationError("--max-websockets-per-user must be positive") }
            c.maxWebSocketsPerUser = n
        }
        if let s = try kernelInfoTimeout ?? settings.double("kernel_info_timeout", env: ["EG_KERNEL_INFO_TIMEOUT", "KG_KERNEL_INFO_TIMEOUT"]) {
            c.kernelInfoTimeout = .milliseconds(Int64(max(0.1, s) * 1000))
        }
        if let s = try kernelLaunchTimeout ?? settings.double("kernel_launch_timeout", env: ["EG_KERNEL_LAUNCH_TIMEOUT"]) {
            c.kernelLaunchTimeout = .milliseconds(Int64(max(0.1, s) * 1000))
        }
        c.maxKernels = try maxKernels ?? settings.int("max_kernels", env: ["EG_MAX_KERNELS", "KG_MAX_KERNELS"])
        c.maxKernelsPerUser = try maxKernelsPerUser ?? settings.int("max_kernels_per_user", env: ["EG_MAX_KERNELS_PER_USER"])
        if let dir = runtimeDir ?? settings.string("runtime_dir", env: ["JUPYTER_RUNTIME_DIR"]) { c.runtimeDirectory = dir }
        if let s = try cullIdleTimeout ?? settings.double("cull_idle_timeout", env: ["EG_CULL_IDLE_TIMEOUT"]) {
            c.cullIdleTimeout = .milliseconds(Int64(max(0, s) * 1000))
        }
        if let s = try cullInterval ?? settings.double("cull_interval", env: ["EG_CULL_INTERVAL"]) {
            c.cullInterval = .milliseconds(Int64(max(0, s) * 1000))
        }
        if let v = try cullConnected.map(Settings.parseBool) ?? settings.bool("cull_connected", env: ["EG_CULL_CONNECTED"]) {
            c.cullConnected = v
        }
        if let v = try cullBusy.map(Settings.parseBool) ?? settings.bool("cull_busy", env: ["EG_CULL_BUSY"]) {
            c.cullBusy = v
        }
        if let v = authorizedUsers ?? settings.stringAllowingEmpty("authorized_users", env: ["EG_AUTHORIZED_USERS"]) {
            c.authorizedUsers = Set(Settings.list(v))
        }
        if let v = unauthorizedUsers ?? settings.stringAllowingEmpty("unauthorized_users", env: ["EG_UNAUTHORIZED_USERS"]) {
            c.unauthorizedUsers = Set(Settings.list(v))
        }
        let cert = certFile ?? settings.string("certfile", env: ["EG_CERTFILE", "KG_CERTFILE"])
        let key = keyFile ?? settings.string("keyfile", env: ["EG_KEYFILE", "KG_KEYFILE"])
        let ca = clientCA ?? settings.string("client_ca", env: ["EG_CLIENT_CA", "KG_CLIENT_CA"])
        switch (cert, key) {
        case (let cert?, let key?):
            do {
                c.tls = try TLSSettings.load(certFile: cert, keyFile: key, clientCAFile: ca)
            } catch {
                throw ValidationError("TLS: \(error.description)")
            }
        case (nil, nil):
            if ca != nil { throw ValidationError("--client-ca needs --certfile and --keyfile") }
        default:
            throw ValidationError("--certfile and --keyfile go together")
        }
        if let v = try sessionPersistence.map(Settings.parseBool) ?? settings.bool("session_persistence", env: ["EG_KERNEL_SESSION_PERSISTENCE"]) {
            c.sessionPersistence = v
        }
        c.persistenceRoot = persistenceRoot ?? settings.string("persistence_root", env: ["EG_PERSISTENCE_ROOT"])
        if let v = try keepKernelsOnExit.map(Settings.parseBool) ?? settings.bool("keep_kernels_on_exit", env: []) {
            c.keepKernelsOnExit = v
        }
        do {
            c.resourceProfiles = try ResourcePolicy.parseProfiles(file["resource_profiles"])
        } catch {
            throw ValidationError("resource_profiles: \(error.description)")
        }
        if let maximum = file["max_resources_per_user"] {
            do {
                c.maxResourcesPerUser = try ResourcePolicy.parseProfiles(["max_resources_per_user": maximum])["max_resources_per_user"]
            } catch {
                throw ValidationError(error.description)
            }
        }
        if let v = try settings.bool("allow_custom_resources", env: []) { c.allowCustomResources = v }
        if let v = try settings.bool("queue_resource_requests", env: []) { c.queueResourceRequests = v }
        if let hosts = file["remote_host_resources"] {
            do {
                for (host, r) in try ResourcePolicy.parseProfiles(hosts) {
                    guard let cpus = r.cpus, let memory = r.memoryBytes else {
                        throw ValidationError("remote_host_resources: host '\(host)' needs cpus and memory")
                    }
                    c.remoteHostResources[host] = .init(cpus: cpus, memoryBytes: memory, gpus: (0..<(r.gpus ?? 0)).map {
                        GPUDevice(index: $0, uuid: "configured-\(host)-\($0)", name: "GPU \($0) (configured)")
                    })
                }
            } catch let error as Quantity.Invalid {
                throw ValidationError("remote_host_resources: \(error.description)")
            }
        }
        if let n = try settings.int("gpu_sharing", env: []) {
            guard n >= 1 else { throw ValidationError("gpu_sharing must be at least 1 (1 = exclusive devices)") }
            c.gpuSharing = n
        }
        if let root = settings.string("cgroup_root", env: []) { c.cgroupRoot = root }
        if let v = try metricsPublic.map(Settings.parseBool) ?? settings.bool("metrics_public", env: []) { c.metricsPublic = v }
        if let v = try autoRestart.map(Settings.parseBool) ?? settings.bool("auto_restart", env: []) { c.autoRestart = v }
        if let n = try restartLimit ?? settings.int("restart_limit", env: []) {
            guard n >= 0 else { throw ValidationError("restart_limit must be >= 0") }
            c.restartLimit = n
        }
        if let n = try maxClientQueueBytes ?? settings.int("max_client_queue_bytes", env: []) {
            guard n > 0 else { throw ValidationError("max_client_queue_bytes must be > 0") }
            c.maxClientQueueBytes = n
        }
        if let n = try replayBufferMessages ?? settings.int("replay_buffer_messages", env: []) {
            guard n >= 0 else { throw ValidationError("replay_buffer_messages must be >= 0") }
            c.replayBufferMessages = n
        }
        if let n = try replayBufferBytes ?? settings.int("replay_buffer_bytes", env: []) {
            guard n >= 0 else { throw ValidationError("replay_buffer_bytes must be >= 0") }
            c.replayBufferBytes = n
        }
        if let s = try replayBufferTTL ?? settings.double("replay_buffer_ttl", env: []) {
            c.replayBufferTTL = .milliseconds(Int64(max(0, s) * 1000))
        }
        kernelGateway.apply(settings, to: &c)
        if let s = try statusSampleInterval ?? settings.double("status_sample_interval", env: []) {
            guard s > 0, s.isFinite else { throw ValidationError("status_sample_interval must be > 0") }
            c.statusSampleInterval = .milliseconds(Int64(max(0.05, s) * 1000))
        }

        c.remote = try settings.remoteConfiguration()
        return (c, settings)
    }
}
