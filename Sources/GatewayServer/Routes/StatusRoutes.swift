import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The operator's status page (issue #10; EG and KG have none).
///
/// - `GET /status`: server-rendered HTML, inline CSS and SVG, no JavaScript; reloads itself.
/// - `GET /status.json`: the same data for scripts.
///
/// Both sit behind the auth token like every other route (`AuthMiddleware`). The page is sent
/// with a Content-Security-Policy that forbids every script and remote resource, so even a
/// missed escape could not run code in an operator's browser, and with `no-referrer` so the
/// `?token=` the page carries on its links never leaks to another site.
struct StatusRoutes {
    let registry: KernelRegistry
    let history: StatusHistory
    let sampleInterval: Duration
    let base: String
    let startedAt: Date

    static let htmlHeaders: HTTPFields = [
        .contentType: "text/html; charset=utf-8",
        .cacheControl: "no-store",
        .contentSecurityPolicy: "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        .xContentTypeOptions: "nosniff",
        referrerPolicy: "no-referrer",
    ]
    // Not among HTTPTypes' standard names.
    private static let referrerPolicy = HTTPField.Name("Referrer-Policy")!

    func html(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let snapshot = await gather()
        let refresh = Int(min(max(sampleInterval.seconds, 5), 60).rounded())
        let page = StatusPage(snapshot: snapshot, base: base, token: request.uri.queryParameters.get("token"),
                              refreshSeconds: refresh)
        return Response(status: .ok, headers: Self.htmlHeaders, body: .init(byteBuffer: ByteBuffer(string: page.render())))
    }

    func json(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        try HTTPHelpers.json(encodable: await gather(), headers: [.cacheControl: "no-store"])
    }

    private func gather() async -> StatusSnapshot {
        await StatusSnapshot.gather(registry: registry, history: history, sampleInterval: sampleInterval, startedAt: startedAt)
    }
}
