import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// Who a request is from, as far as the gateway can tell.
///
/// `user == nil` is the compatible mode (no auth, or EG/KG's single shared token): the request
/// may see and use every kernel, and `KERNEL_USERNAME` comes from the client, as in EG. A named
/// user (a per-user token or a JWT) sees and uses only the kernels started as that user,
/// unless an admin.
public struct Identity: Sendable, Equatable {
    public var user: String?
    public var isAdmin: Bool

    public static let unrestricted = Identity(user: nil, isAdmin: true)
}

/// Credentials, as EG/KG take them (`TokenAuthorizationMixin`) plus jupyter_server's `Bearer`:
/// `Authorization: token <t>`, `Authorization: Bearer <t>` (scheme case-insensitive) or
/// `?token=<t>`. Beyond EG: per-user tokens (stored as SHA-256 digests: the tokens are random
/// secrets, so a fast hash is enough and the config file holds nothing reusable) and JWTs.
/// OPTIONS never needs a credential. Comparisons are constant-time.
public struct TokenAuthenticator: Sendable {
    /// EG_AUTH_TOKEN: full access, as in EG.
    let token: String
    /// SHA-256 digests (lowercase hex) of per-user tokens → user.
    let userTokens: [String: String]
    let admins: Set<String>
    let jwt: JWTVerifier?

    public init(token: String, userTokens: [String: String] = [:], admins: Set<String> = [], jwt: JWTVerifier? = nil) {
        self.token = token
        self.userTokens = userTokens
        self.admins = admins
        self.jwt = jwt
    }

    init(configuration c: GatewayConfiguration) {
        self.init(token: c.authToken, userTokens: c.userTokens, admins: c.admins, jwt: c.jwt)
    }

    var enabled: Bool { !token.isEmpty || !userTokens.isEmpty || jwt != nil }

    func isAuthorized(_ request: Request) -> Bool { identify(request) != nil }

    /// The request's identity, or nil when it carries no valid credential.
    func identify(_ request: Request) -> Identity? {
        guard enabled else { return .unrestricted }
        if request.method == .options { return .unrestricted }
        var presented: [String] = []
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            if parts.count == 2, ["token", "bearer"].contains(parts[0].lowercased()) {
                presented.append(String(parts[1]).trimmingCharacters(in: .whitespaces))
            }
        }
        if let query = request.uri.queryParameters.get("token") { presented.append(String(query)) }
        for credential in presented {
            if let identity = identify(credential) { return identity }
        }
        return nil
    }

    func identify(_ credential: String) -> Identity? {
        if !token.isEmpty, Self.constantTimeEqual(credential, token) { return .unrestricted }
        if !userTokens.isEmpty {
            let digest = Self.sha256Hex(credential)
            // Every stored digest is compared, so timing says nothing about which one matched.
            var found: String?
            for (stored, user) in userTokens where Self.constantTimeEqual(digest, stored) { found = user }
            if let found { return Identity(user: found, isAdmin: admins.contains(found)) }
        }
        if let jwt, credential.split(separator: ".", omittingEmptySubsequences: false).count == 3,
           let verified = try? jwt.verify(credential) {
            return Identity(user: verified.user, isAdmin: verified.admin || admins.contains(verified.user))
        }
        return nil
    }

    public static func sha256Hex(_ s: String) -> String {
        SHA256.hash(data: Array(s.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Compares digests so neither length nor content leaks through timing.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let da = SHA256.hash(data: Array(a.utf8))
        let db = SHA256.hash(data: Array(b.utf8))
        var diff: UInt8 = 0
        for (x, y) in zip(da, db) { diff |= x ^ y }
        return diff == 0
    }
}

struct AuthMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let authenticator: TokenAuthenticator
    /// Paths (after the base URL) served without a token, as EG serves its swagger files.
    let publicPaths: Set<String>
    /// Paths that show every user's kernels (status page, metrics, resources): admins only
    /// when users have identities.
    let adminPaths: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if publicPaths.contains(request.uri.path) { return try await next(request, context) }
        guard let identity = authenticator.identify(request) else { throw GatewayError.unauthorized }
        if identity.user != nil, !identity.isAdmin, adminPaths.contains(request.uri.path) {
            throw GatewayError(.forbidden, reason: "Forbidden", "\(request.uri.path) shows every user's kernels: admins only")
        }
        var context = context
        context.identity = identity
        return try await next(request, context)
    }
}

/// CORS headers exactly as EG's `CORSMixin`: each `Access-Control-*` header is emitted only
/// when its setting is non-empty; OPTIONS preflights answer 200 without authentication.
struct CORSHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    let headers: [(HTTPField.Name, String)]

    init(configuration c: GatewayConfiguration) {
        var h: [(HTTPField.Name, String)] = []
        func add(_ name: String, _ value: String) {
            if !value.isEmpty, let n = HTTPField.Name(name) { h.append((n, value)) }
        }
        add("Access-Control-Allow-Origin", c.allowOrigin)
        add("Access-Control-Allow-Credentials", c.allowCredentials)
        add("Access-Control-Allow-Headers", c.allowHeaders)
        add("Access-Control-Allow-Methods", c.allowMethods)
        add("Access-Control-Expose-Headers", c.exposeHeaders)
        add("Access-Control-Max-Age", c.maxAge)
        headers = h
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        if request.method == .options {
            response = Response(status: .ok)
        } else {
            do {
                response = try await next(request, context)
            } catch {
                response = JSONErrorMiddleware<Context>.render(error, request: request, context: context)
            }
        }
        for (name, value) in headers { response.headers[name] = value }
        return response
    }
}
