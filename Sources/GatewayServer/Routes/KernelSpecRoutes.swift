import Foundation
import HTTPTypes
import Hummingbird
import JupyterProtocol
import NIOCore

/// `GET /api/kernelspecs`, `GET /api/kernelspecs/{name}` and the kernelspec resource files
/// (jupyter_server `services/kernelspecs/handlers.py`, `KernelSpecResourceHandler`).
struct KernelSpecRoutes {
    let specs: KernelSpecStore
    let configuration: GatewayConfiguration
    /// For the user lists as last reloaded.
    let registry: KernelRegistry

    func model(_ spec: KernelSpec) throws -> [String: Any] {
        let encoder = JSONEncoder()
        var file = spec.file
        if file.env == nil { file.env = [:] }
        if file.metadata == nil { file.metadata = [:] }
        if file.interruptMode == nil { file.interruptMode = "signal" }
        let specObject = try JSONSerialization.jsonObject(with: try encoder.encode(file))
        var out: [String: Any] = [:]
        out["name"] = spec.name
        out["spec"] = specObject
        out["resources"] = spec.resources(baseURL: configuration.baseURL)
        return out
    }

    func list(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let users = await registry.current
        var all: [String: Any] = [:]
        let user = Self.userFilter(request)
        for (name, spec) in specs.all {
            if let user, !KernelAuthorization.isVisible(spec, to: user, configuration: users) { continue }
            all[name] = try model(spec)
        }
        var defaultName = configuration.defaultKernelName
        if specs.spec(named: defaultName) == nil, let first = specs.all.keys.sorted().first { defaultName = first }
        var out: [String: Any] = [:]
        out["default"] = defaultName
        out["kernelspecs"] = all
        return try HTTPHelpers.json(out)
    }

    func get(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let users = await registry.current
        let name = context.parameters.get("name") ?? ""
        guard let spec = specs.spec(named: name.removingPercentEncoding ?? name) else {
            throw GatewayError.notFound("Kernel spec \(name) not found")
        }
        if let user = Self.userFilter(request), !KernelAuthorization.isVisible(spec, to: user, configuration: users) {
            throw GatewayError.forbidden("User \(user) is not authorized to use kernel spec \(spec.name)")
        }
        return try HTTPHelpers.json(try model(spec))
    }

    /// EG's `?user=` query argument (first value; empty means no filter).
    static func userFilter(_ request: Request) -> String? {
        guard let user = request.uri.queryParameters.get("user"), !user.isEmpty else { return nil }
        return user
    }

    /// Serves a file of the spec's directory. The path is decoded once and must name a file
    /// inside that directory: `..`, absolute paths, NUL and symlinks out are all refused,
    /// whatever their encoding (a second level of percent-encoding stays literal).
    func resource(_ request: Request, _ context: GatewayRequestContext, prefix: String) throws -> Response {
        let rawPath = request.uri.path
        guard rawPath.hasPrefix(prefix) else { throw GatewayError.notFound("Not found") }
        let rest = String(rawPath.dropFirst(prefix.count))
        let segments = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard segments.count >= 2, let name = segments[0].removingPercentEncoding,
              let spec = specs.spec(named: name) else {
            throw GatewayError.notFound("Kernel spec resource not found")
        }
        var parts: [String] = []
        for raw in segments.dropFirst() {
            guard let part = raw.removingPercentEncoding else { throw GatewayError.notFound("Kernel spec resource not found") }
            let unsafe: Bool = Self.isUnsafeSegment(part)
            if unsafe {
                throw GatewayError.notFound("Kernel spec resource not found")
            }
            parts.append(part)
        }
        let base = spec.resourceDirectory.resolvingSymlinksInPath().standardizedFileURL.path
        var file = URL(fileURLWithPath: base)
        for p in parts { file.appendPathComponent(p) }
        let resolved = file.resolvingSymlinksInPath().standardizedFileURL.path
        var isDir: ObjCBool = false
        guard resolved.hasPrefix(base + "/"), FileManager.default.fileExists(atPath: resolved, isDirectory: &isDir),
              !isDir.boolValue, let data = FileManager.default.contents(atPath: resolved) else {
            throw GatewayError.notFound("Kernel spec resource not found")
        }
        var headers: HTTPFields = [.contentType: Self.mimeType(resolved)]
        if resolved.hasSuffix(".png") { headers[.cacheControl] = "max-age=2592000" }
        headers[.contentLength] = String(data.count)
        if request.method == .head {
            return Response(status: .ok, headers: headers, body: .init())
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// A decoded path segment that could leave the directory or confuse the file system.
    static func isUnsafeSegment(_ part: String) -> Bool {
        if part.isEmpty { return true }
        if part == "." { return true }
        if part == ".." { return true }
        let bytes = Array(part.utf8)
        return bytes.contains(UInt8(ascii: "/")) || bytes.contains(UInt8(ascii: "\\")) || bytes.contains(0)
    }

    static func mimeType(_ path: String) -> String {
        switch (path as NSString).pathExtension.lowercased() {
        case "png": "image/png"
        case "svg": "image/svg+xml"
        case "js": "application/javascript"
        case "css": "text/css"
        case "json": "application/json"
        case "txt": "text/plain"
        default: "application/octet-stream"
        }
    }
}
