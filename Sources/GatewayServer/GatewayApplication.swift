import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import JupyterProtocol
import Logging
import NIOCore
import ServiceLifecycle

/// The gateway's version, reported as `gateway_version` by `GET /api`.
public let ganymedeVersion = "0.1.0"

/// Builds the HTTP/WebSocket application and the services that go with it.
public struct Gateway: Sendable {
    public let configuration: GatewayConfiguration
    public let registry: KernelRegistry
    public let logger: Logger
    /// The status page's last hour of kernel counts and message rates.
    public let statusHistory = StatusHistory()

    public init(configuration: GatewayConfiguration, logger: Logger,
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.configuration = configuration
        self.logger = logger
        let specs = KernelSpecStore(configuration: configuration, environment: environment, logger: logger)
        self.registry = KernelRegistry(configuration: configuration, specs: specs, logger: logger, environment: environment)
    }

    /// The application (a `Service`) plus the service that stops every kernel on shutdown.
    /// Run them in one `ServiceGroup` in this order: graceful shutdown runs in reverse, so
    /// kernels are stopped (and WebSockets closed) before the server stops.
    public func makeServices(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> [any Service] {
        var services: [any Service] = [buildApplication(onServerRunning: onServerRunning), KernelReaperService(registry: registry)]
        services.append(StatusHistoryService(registry: registry, history: statusHistory, interval: configuration.statusSampleInterval))
        let specTimeouts = registry.specs.all.values.contains { ManagedKernel.seconds($0.file.metadata?["cull_idle_timeout"]) ?? .zero > .zero }
        if configuration.cullIdleTimeout > .zero || specTimeouts {
            let interval = configuration.cullInterval > .zero ? configuration.cullInterval : .seconds(300)
            logger.info("culling idle kernels", metadata: [
                "timeout": "\(configuration.cullIdleTimeout)", "interval": "\(interval)",
                "cull_connected": "\(configuration.cullConnected)", "cull_busy": "\(configuration.cullBusy)",
            ])
            services.append(KernelCullerService(registry: registry, interval: interval))
        }
        return services
    }

    public func buildApplication(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let c = configuration
        let authenticator = TokenAuthenticator(configuration: c)
        let base = String(c.baseURL.dropLast())  // "" or "/prefix"
        var publicPaths: Set<String> = [
            "\(base)/api/swagger.yaml", "\(base)/api/swagger.json", "\(base)/api/health", "\(base)/api/health/ready",
        ]
        if c.metricsPublic { publicPaths.insert("\(base)/metrics") }

        let router = Router(context: GatewayRequestContext.self)
        router.add(middleware: JSONErrorMiddleware())
        router.add(middleware: CORSHeadersMiddleware(configuration: c))
        let adminPaths: Set<String> = ["\(base)/metrics", "\(base)/status", "\(base)/status.json", "\(base)/api/resources"]
        router.add(middleware: AuthMiddleware(authenticator: authenticator, publicPaths: publicPaths, adminPaths: adminPaths))

        let api = base.isEmpty ? router.group() : router.group(RouterPath(base))
        let sessionStore = SessionStore()
        let kernels = KernelRoutes(registry: registry, configuration: c)
        let specs = KernelSpecRoutes(specs: registry.specs, configuration: c, registry: registry)
        let sessions = SessionRoutes(registry: registry, store: sessionStore, configuration: c)
        let channels = ChannelsWebSocket(registry: registry, configuration: c, authenticator: authenticator)

        let versionInfo: [String: String] = ["version": "2.14.0", "gateway_version": ganymedeVersion, "gateway": "ganymede"]
        api.get("api") { _, _ -> Response in
            try HTTPHelpers.json(versionInfo)
        }
        let swaggerYAML = OpenAPIDocument.yaml
        let swaggerJSON = (try? OpenAPIDocument.json()) ?? Data("{}".utf8)
        api.get("api/swagger.yaml") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/x-yaml"], body: .init(byteBuffer: ByteBuffer(string: swaggerYAML)))
        }
        api.get("api/swagger.json") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: swaggerJSON)))
        }
        let health = HealthRoutes(registry: registry, startedAt: Date())
        api.get("api/health", use: health.liveness)
        api.get("api/health/ready", use: health.readiness)
        api.get("metrics", use: health.metrics)
        let status = StatusRoutes(registry: registry, history: statusHistory, sampleInterval: c.statusSampleInterval,
                                  base: base, startedAt: Date())
        api.get("status", use: status.html)
        api.get("status.json", use: status.json)
        api.get("api/resources", use: ResourceRoutes(registry: registry).get)
        api.get("api/kernelspecs", use: specs.list)
        api.get("api/kernelspecs/:name", use: specs.get)
        let resourcePrefix = "\(base)/kernelspecs/"
        let resource: @Sendable (Request, GatewayRequestContext) throws -> Response = { request, context in
            try specs.resource(request, context, prefix: resourcePrefix)
        }
        api.get("kernelspecs/**", use: resource)
        api.head("kernelspecs/**", use: resource)
        api.get("api/kernels", use: kernels.list)
        api.post("api/kernels", use: kernels.create)
        api.get("api/kernels/:kernel_id", use: kernels.get)
        api.delete("api/kernels/:kernel_id", use: kernels.delete)
        api.post("api/kernels/:kernel_id/interrupt", use: kernels.interrupt)
        api.post("api/kernels/:kernel_id/restart", use: kernels.restart)
        api.get("api/kernels/:kernel_id/shares", use: kernels.shares)
        api.put("api/kernels/:kernel_id/shares", use: kernels.setShares)
        api.get("api/kernels/:kernel_id/channels", use: channels.httpFallback)
        api.get("api/sessions", use: sessions.list)
        api.post("api/sessions", use: sessions.create)
        api.get("api/sessions/:session_id", use: sessions.get)
        api.patch("api/sessions/:session_id", use: sessions.patch)
        api.delete("api/sessions/:session_id", use: sessions.delete)

        let ping: AutoPingSetup = c.wsPingInterval > .zero ? .enabled(timePeriod: c.wsPingInterval) : .disabled
        let wsConfiguration = WebSocketServerConfiguration(maxFrameSize: c.maxWebSocketMessageSize, autoPing: ping, validateUTF8: true)
        let decide: GatewayServerChannel.Decide = { request, logger in
            await channels.decide(request, logger: logger, configuration: wsConfiguration)
        }
        return application(router: router, decide: decide, onServerRunning: onServerRunning)
    }

    /// The application around `router`: our server pipeline (`GatewayServerChannel`) with
    /// `decide` answering WebSocket upgrades, bound to the configured address.
    func application(router: Router<GatewayRequestContext>, decide: @escaping GatewayServerChannel.Decide,
                     onServerRunning: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
        let c = configuration
        let maxFrameSize = c.maxWebSocketMessageSize
        let httpIdleTimeout: TimeAmount? = c.httpIdleTimeout > .zero
            ? .nanoseconds(Int64(c.httpIdleTimeout.components.seconds) * 1_000_000_000 + c.httpIdleTimeout.components.attoseconds / 1_000_000_000)
            : nil
        let tls = c.tls
        let server = HTTPServerBuilder { responder in
            var plain = GatewayServerChannel(responder: responder, decide: decide, maxFrameSize: maxFrameSize)
            plain.idleTimeout = httpIdleTimeout
            guard let tls else { return plain }
            return try TLSChannel(plain, tlsConfiguration: tls)
        }
        let appConfiguration = ApplicationConfiguration(address: BindAddress.hostname(c.ip, port: c.port), serverName: nil)
        let running: @Sendable (any NIOCore.Channel) async -> Void = { channel in
            await onServerRunning(channel.localAddress?.port ?? c.port)
        }
        return Application(router: router, server: server, configuration: appConfiguration, onServerRunning: running, logger: logger)
    }
}

/// Re-attaches persisted kernels at start; stops every kernel when the gateway shuts down
/// (or, with session persistence, leaves them running for the next gateway).
struct KernelReaperService: Service {
    let registry: KernelRegistry

    func run() async throws {
        await registry.reattachAll()
        try? await gracefulShutdown()
        await registry.shutdownAll()
    }
}

/// Runs the idle culler every `interval` (jupyter_server's `PeriodicCallback(cull_kernels)`).
struct KernelCullerService: Service {
    let registry: KernelRegistry
    let interval: Duration

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard !Task.isCancelled else { break }
                await registry.cullIdleKernels()
            }
        }
    }
}
