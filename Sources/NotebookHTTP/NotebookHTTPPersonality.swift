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
    public init(settings: NotebookHTTPConfiguration, gateway: Gateway) async throws(NotebookError) {
        var settings = settings
        settings.gatewayToken = gateway.configuration.authToken
        var seen: Set<String> = []
        var mounts: [NotebookMount] = []
        for mount in settings.mounts {
            guard seen.insert(mount.prefix).inserted else {
                throw NotebookError("prefix \(mount.prefix) is mounted twice", path: mount.path)
            }
            let document = try await NotebookDocument.load(uri: mount.path)
            mounts.append(try NotebookMount(prefix: mount.prefix, path: mount.path, document: document, settings: settings,
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
        let publicPrefix = settings.staticPath == nil ? nil : baseURL + "public/"
        router.add(middleware: NotebookHTTPMiddleware(mounts: mounts, baseURL: baseURL, responder: EndpointResponder(settings: settings),
                                                      allowDownload: settings.allowNotebookDownload, publicPrefix: publicPrefix))
        if let staticPath = settings.staticPath {
            // Inside the notebook middleware: Hummingbird's FileMiddleware serves a file when the
            // router has no route for the path (404), which is every /public path here.
            router.add(middleware: FileMiddleware(staticPath, urlBasePath: baseURL + "public", logger: logger))
        }
    }

    public var services: [any Service] {
        [NotebookPoolService(mounts: mounts, reloadInterval: settings.reloadInterval, logger: logger)]
    }
}
