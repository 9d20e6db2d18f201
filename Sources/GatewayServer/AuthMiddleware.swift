import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// Token authentication as EG/KG (`TokenAuthorizationMixin`) plus jupyter_server's `Bearer`:
/// `Authorization: token <t>`, `Authorization: Bearer <t>` (scheme case-insensitive) or
/// `?token=<t>`. OPTIONS never needs a token. Comparison is constant-time.
struct TokenAuthenticator: Sendable {
    let token: String

    var enabled: Bool { !token.isEmpty }

    func isAuthorized(_ request: Request) -> Bool {
        guard enabled else { return true }
        if request.method == .options { return true }
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            if parts.count == 2, ["token", "bearer"].contains(parts[0].lowercased()),
               Self.constantTimeEqual(String(parts[1]).trimmingCharacters(in: .whitespaces), token) {
                return true
            }
        }
        if let query = request.uri.queryParameters.get("token"), Self.constantTimeEqual(query, token) {
            return true
        }
        return false
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

struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let authenticator: TokenAuthenticator
    /// Paths (after the base URL) served without a token, as EG serves its swagger files.
    let publicPaths: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if authenticator.isAuthorized(request) || publicPaths.contains(request.uri.path) {
            return try await next(request, context)
        }
        throw GatewayError.unauthorized
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
