import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import ServiceLifecycle

/// A route set served instead of the Jupyter kernel API, as Kernel Gateway's `KG_API` selects a
/// personality (`kernel_gateway.notebook_http`): same server pipeline, JSON errors, CORS and token
/// auth (KG's notebook-http handlers carry the same mixins), no `/api/kernels`.
public protocol GatewayPersonality: Sendable {
    /// Adds the personality's middleware or routes; they run after JSON errors, CORS and auth.
    func install(on router: Router<GatewayRequestContext>)
    /// Long-running work (kernel pools, file watchers), run in the gateway's service group.
    var services: [any Service] { get }
}

extension Gateway {
    /// The services of a gateway serving `personality`: its own services, the application, and
    /// the service that stops every kernel on shutdown (reverse order on shutdown).
    public func makeServices(personality: any GatewayPersonality,
                             onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> [any Service] {
        personality.services + [buildApplication(personality: personality, onServerRunning: onServerRunning),
                                KernelReaperService(registry: registry)]
    }

    func buildApplication(personality: any GatewayPersonality,
                          onServerRunning: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
        let c = configuration
        let router = Router(context: GatewayRequestContext.self)
        router.add(middleware: JSONErrorMiddleware())
        router.add(middleware: CORSHeadersMiddleware(configuration: c))
        router.add(middleware: AuthMiddleware(authenticator: TokenAuthenticator(configuration: c), publicPaths: [], adminPaths: []))
        personality.install(on: router)
        let decide: GatewayServerChannel.Decide = { request, _ in
            .refuse(GatewayError(.notFound, "No WebSocket endpoint at \(request.uri.path)"))
        }
        return application(router: router, decide: decide, onServerRunning: onServerRunning)
    }
}
