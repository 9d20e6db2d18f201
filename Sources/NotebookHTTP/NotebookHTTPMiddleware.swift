import Foundation
import GatewayServer
import Hummingbird
import NIOCore

/// Routes requests to mounts. It is the last middleware: what no mount serves goes on to the
/// router, which answers 404 with the gateway's JSON error.
struct NotebookHTTPMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let mounts: [NotebookMount]
    let baseURL: String
    let responder: EndpointResponder
    let allowDownload: Bool
    /// `<base>public/` when KG_STATIC_PATH is set: left to the file middleware.
    let publicPrefix: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard path.hasPrefix(baseURL) || path + "/" == baseURL else { return try await next(request, context) }
        if let publicPrefix, path.hasPrefix(publicPrefix) { return try await next(request, context) }
        let relative = "/" + path.dropFirst(min(baseURL.count, path.count))
        for mount in mounts {
            guard let rest = Self.strip(mount.prefix, from: relative) else { continue }
            return try await serve(request, mount: mount, rest: rest)
        }
        return try await next(request, context)
    }

    /// The path below `prefix` ("/…"), or nil when `path` is not under it.
    static func strip(_ prefix: String, from path: String) -> String? {
        if prefix == "/" { return path }
        if path == prefix { return "/" }
        guard path.hasPrefix(prefix + "/") else { return nil }
        return String(path.dropFirst(prefix.count))
    }

    private func serve(_ request: Request, mount: NotebookMount, rest: String) async throws -> Response {
        let generation = await mount.begin()
        do {
            let response = try await route(request, generation: generation, rest: rest)
            await mount.end(generation)
            return response
        } catch {
            await mount.end(generation)
            throw error
        }
    }

    private func route(_ request: Request, generation: NotebookMount.Generation, rest: String) async throws -> Response {
        if rest == "/_api/spec/swagger.json" {
            guard request.method == .get else { throw GatewayError(.methodNotAllowed, "Only GET is supported by \(request.uri.path)") }
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(string: generation.definition.swagger)))
        }
        if allowDownload, rest == "/_api/source" {
            guard request.method == .get else { throw GatewayError(.methodNotAllowed, "Only GET is supported by \(request.uri.path)") }
            return Response(status: .ok, headers: [.contentType: "application/x-ipynb+json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: generation.definition.document.bytes)))
        }
        var segments: [String] = []
        for raw in rest.split(separator: "/", omittingEmptySubsequences: false).dropFirst() {
            let bytes = RequestBundle.percentDecoded(Array(raw.utf8), plusIsSpace: false)
            guard let segment = String(validatingUTF8: bytes) else {
                throw GatewayError(.badRequest, "The path is not valid UTF-8 after percent-decoding")
            }
            segments.append(segment)
        }
        return try await responder.respond(request, subpath: segments, generation: generation)
    }
}
