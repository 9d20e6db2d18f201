import Foundation
import GatewayServer
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// Kernel Gateway's notebook-http personality (`KG_API=kernel_gateway.notebook_http`): annotated
/// notebook cells served as HTTP endpoints, for one or several notebooks under URL prefixes.
///
/// Per mount (`prefix` after the base URL): the endpoints, `GET <prefix>/_api/spec/swagger.json`,
/// and with `allowNotebookDownload` `GET <prefix>/_api/source`. Anything else is a JSON 404.
public struct NotebookHTTPPersonality: GatewayPersonality {
    public let mounts: [NotebookMount]
    let settings: NotebookHTTPConfiguration
    let baseURL: String
    let logger: Logger

    /// Loads every notebook; throws the first that cannot be served (KG refuses to start too).
    public init(settings: NotebookHTTPConfiguration, gateway: Gateway) throws(NotebookError) {
        var seen: Set<String> = []
        var mounts: [NotebookMount] = []
        for mount in settings.mounts {
            guard seen.insert(mount.prefix).inserted else {
                throw NotebookError("prefix \(mount.prefix) is mounted twice", path: mount.path)
            }
            mounts.append(try NotebookMount(prefix: mount.prefix, path: mount.path, settings: settings,
                                            registry: gateway.registry, logger: gateway.logger))
        }
        guard !mounts.isEmpty else {
            throw NotebookError("notebook-http mode needs a notebook: set KG_SEED_URI (--seed-uri) or --notebook")
        }
        // Longest prefix first, so /a/b wins over /a and / catches the rest.
        self.mounts = mounts.sorted { $0.prefix.count > $1.prefix.count }
        self.settings = settings
        self.baseURL = gateway.configuration.baseURL
        self.logger = gateway.logger
    }

    public func install(on router: Router<GatewayRequestContext>) {
        router.add(middleware: NotebookHTTPMiddleware(mounts: mounts, baseURL: baseURL, responder: EndpointResponder(settings: settings),
                                                      allowDownload: settings.allowNotebookDownload))
    }

    public var services: [any Service] {
        [NotebookPoolService(mounts: mounts, reloadInterval: settings.reloadInterval, logger: logger)]
    }
}

/// Routes requests to mounts. It is the last middleware: what no mount serves goes on to the
/// router, which answers 404 with the gateway's JSON error.
struct NotebookHTTPMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let mounts: [NotebookMount]
    let baseURL: String
    let responder: EndpointResponder
    let allowDownload: Bool

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard path.hasPrefix(baseURL) || path + "/" == baseURL else { return try await next(request, context) }
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
            guard let segment = String(validatingUTF8Bytes: bytes) else {
                throw GatewayError(.badRequest, "The path is not valid UTF-8 after percent-decoding")
            }
            segments.append(segment)
        }
        return try await responder.respond(request, subpath: segments, generation: generation)
    }
}

/// Starts every mount's kernels, watches the notebook files, and stops the kernels on shutdown.
/// A notebook whose kernels cannot start at launch stops the gateway (the error is logged).
struct NotebookPoolService: Service {
    let mounts: [NotebookMount]
    let reloadInterval: Duration?
    let logger: Logger

    func run() async throws {
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for mount in mounts {
                    group.addTask { try await mount.start() }
                }
                try await group.waitForAll()
            }
        } catch {
            logger.critical("a notebook's kernels failed to start", metadata: ["error": "\(error)"])
            for mount in mounts { await mount.shutdown() }
            throw error
        }
        if let interval = reloadInterval {
            // The watchers run until graceful shutdown cancels them.
            await cancelWhenGracefulShutdown {
                await withTaskGroup(of: Void.self) { group in
                    for mount in mounts {
                        group.addTask {
                            while !Task.isCancelled {
                                try? await Task.sleep(for: interval)
                                if Task.isCancelled { break }
                                await mount.reloadIfChanged()
                            }
                        }
                    }
                }
            }
        }
        try? await gracefulShutdown()
        for mount in mounts { await mount.shutdown() }
    }
}
