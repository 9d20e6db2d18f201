import Hummingbird

/// The request context of the HTTP router.
public struct GatewayRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by `AuthMiddleware`; unrestricted where no authentication applies.
    public var identity: Identity = .unrestricted

    public init(source: Source) {
        self.coreContext = .init(source: source)
    }
}
