import Foundation
import NIOSSL
import Provisioning

/// Everything the gateway can be configured with. Filled by the executable from flags,
/// then environment (EG_*, KG_*, GANYMEDE_*), then an optional YAML file.
public struct GatewayConfiguration: Sendable {
    public var ip = "127.0.0.1"
    public var port = 8888
    /// Always starts and ends with "/".
    public var baseURL = "/"
    /// Empty: no authentication (EG's default).
    public var authToken = ""
    /// `users: {name: {token_sha256: <hex>}}`: per-user tokens, stored as SHA-256 digests
    /// (digest → user). With them (or JWTs) each request has a user who owns its kernels.
    public var userTokens: [String: String] = [:]
    /// `admins: [names]`: users who see and manage every kernel.
    public var admins: Set<String> = []
    /// `jwt: {keys, issuer, audience, username_claim, admin_claim}`: JWT bearer tokens.
    public var jwt: JWTVerifier?
    public var listKernels = true
    public var defaultKernelName = "python3"
    /// Overrides the kernel name of every request and notebook (KG_FORCE_KERNEL_NAME); empty: none.
    public var forceKernelName = ""
    /// Extra directories holding `<name>/kernel.json`, searched before the Jupyter path.
    public var kernelSpecDirectories: [String] = []
    /// Non-KERNEL_ client env names passed to kernels; `*` = all (EG_CLIENT_ENVS).
    public var clientEnvs: [String] = []
    /// Gateway env names copied into kernels (EG_INHERITED_ENVS).
    public var inheritedEnvs: [String] = []
    /// Env names whose values are never passed to kernels nor logged.
    public var sensitiveEnvKeys: [String] = []
    // CORS (EG_ALLOW_*): each header is sent only when set.
    public var allowOrigin = ""
    public var allowCredentials = ""
    public var allowHeaders = ""
    public var allowMethods = ""
    public var exposeHeaders = ""
    public var maxAge = ""
    /// WebSocket ping interval; zero disables pings (EG_WS_PING_INTERVAL_SECS).
    public var wsPingInterval: Duration = .seconds(30)
    /// How long a WebSocket connect waits for `kernel_info_reply` (jupyter_server `kernel_info_timeout`).
    public var kernelInfoTimeout: Duration = .seconds(60)
    /// Default launch timeout; a request's KERNEL_LAUNCH_TIMEOUT overrides it (EG_KERNEL_LAUNCH_TIMEOUT).
    public var kernelLaunchTimeout: Duration = .seconds(40)
    /// Wait after `shutdown_request` before SIGTERM, and again before SIGKILL.
    public var shutdownWaitTime: Duration = .seconds(5)
    /// Per-session replay buffer while a session has no open WebSocket: message and byte
    /// bounds (oldest dropped first, and the client told) and how long it is kept.
    public var replayBufferMessages = 10_000
    public var replayBufferBytes = 16 << 20
    public var replayBufferTTL: Duration = .seconds(600)
    /// Kernel limits (EG_MAX_KERNELS, EG_MAX_KERNELS_PER_USER); starts in progress count.
    public var maxKernels: Int?
    public var maxKernelsPerUser: Int?
    /// Heartbeat ping period; a ping not echoed within it counts as missed.
    public var heartbeatInterval: Duration = .seconds(3)
    /// Automatic restarts of a kernel that died, before it is declared dead (jupyter_client
    /// `KernelRestarter.restart_limit`). A kernelspec can override both with `metadata.auto_restart`
    /// and `metadata.restart_limit`.
    public var restartLimit = 5
    public var autoRestart = true
    /// Idle culling (jupyter_server `MappingKernelManager.cull_*`, set in EG by EG_CULL_*): a kernel
    /// idle longer than `cullIdleTimeout` (zero = never; a kernelspec's `metadata.cull_idle_timeout`
    /// wins) is shut down at the next check, unless busy (`cullBusy`) or connected (`cullConnected`).
    public var cullIdleTimeout: Duration = .zero
    public var cullInterval: Duration = .seconds(300)
    public var cullConnected = false
    public var cullBusy = false
    /// How long a culled kernel's id keeps answering 404 with the reason it is gone.
    public var culledKernelMemory: Duration = .seconds(3600)
    /// KERNEL_USERNAME allow and deny lists (EG_AUTHORIZED_USERS, EG_UNAUTHORIZED_USERS); an
    /// empty allow list admits everyone. See `KernelAuthorization`.
    public var authorizedUsers: Set<String> = []
    public var unauthorizedUsers: Set<String> = ["root"]
    /// Serve `/metrics` without the auth token (for a Prometheus that cannot send one).
    public var metricsPublic = false
    /// How often the status page's history samples kernel counts and message rates (it keeps
    /// 360 samples: an hour at the default).
    public var statusSampleInterval: Duration = .seconds(10)
    /// Kernel session persistence (EG_KERNEL_SESSION_PERSISTENCE, EG_PERSISTENCE_ROOT): running
    /// kernels are recorded under `persistenceRoot` and re-attached by the next gateway started
    /// with the same root. Kernels then get no JPY_PARENT_PID (they must survive the gateway),
    /// and with `keepKernelsOnExit` a gateway that stops leaves them running for its successor.
    public var sessionPersistence = false
    public var persistenceRoot: String?
    public var keepKernelsOnExit = true
    /// Named resource profiles (config file `resource_profiles`), whether clients may ask for
    /// resources outside them (KERNEL_CPUS/KERNEL_MEMORY/KERNEL_GPUS), and the cgroup v1 root
    /// under which local kernels get their limits. See `ResourcePolicy`, `LocalResourceLimits`.
    public var resourceProfiles: [String: ResourceRequest] = [:]
    public var allowCustomResources = true
    /// `max_resources_per_user`: the most CPUs, memory and GPUs one user's kernels may hold
    /// together (403 naming the limit beyond it).
    public var maxResourcesPerUser: ResourceRequest?
    /// `queue_resource_requests`: a start that does not fit waits (up to its launch timeout) for
    /// resources to be released instead of being refused at once.
    public var queueResourceRequests = false
    /// `gpu_sharing`: kernels that may be given the same GPU (1: exclusive devices).
    public var gpuSharing = 1
    /// `remote_host_resources`: SSH hosts' capacities, for placement by free capacity (hosts not
    /// listed are asked over SSH).
    public var remoteHostResources: [String: ResourceLedger.Capacity] = [:]
    public var cgroupRoot = "/sys/fs/cgroup"
    /// HTTPS and WSS when set (EG_CERTFILE / EG_KEYFILE, and EG_CLIENT_CA for client
    /// certificates); see `TLSSettings.load`.
    public var tls: TLSConfiguration?
    /// Most bytes of kernel output queued for one WebSocket client that is not keeping up;
    /// beyond it the client is disconnected and its session's output kept for replay.
    public var maxClientQueueBytes = 64 << 20
    /// Largest accepted WebSocket message and REST body.
    public var maxWebSocketMessageSize = 64 << 20
    public var maxRequestBodySize = 1 << 20
    /// How long a connection may take to send a request head, or stay idle between requests,
    /// before it is closed (slow clients must not pin connections); zero disables.
    public var httpIdleTimeout: Duration = .seconds(60)
    /// Open channels WebSockets per user (429 beyond); nil: no limit.
    public var maxWebSocketsPerUser: Int?
    /// Where connection files and kernel logs are written (mode 0700).
    public var runtimeDirectory: String
    public var gatewayUsername: String
    /// Remote kernels: launcher response listener, SSH hosts, Slurm (EG_RESPONSE_*, EG_REMOTE_*...).
    public var remote = RemoteConfiguration()

    public init() {
        let env = ProcessInfo.processInfo.environment
        let base = env["JUPYTER_RUNTIME_DIR"] ?? (NSTemporaryDirectory() + "ganymede-\(getuid())")
        runtimeDirectory = base
        let uid = getuid()
        let fallback: String = uid == 0 ? "root" : String(uid)
        gatewayUsername = env["USER"] ?? env["LOGNAME"] ?? fallback
    }

    /// Normalises a base URL to "/x/y/" form.
    public static func normalizeBaseURL(_ raw: String) -> String {
        var s = raw.trimmingCharacters(in: .whitespaces)
        if !s.hasPrefix("/") { s = "/" + s }
        if !s.hasSuffix("/") { s += "/" }
        while s.contains("//") { s = s.replacingOccurrences(of: "//", with: "/") }
        return s
    }
}
