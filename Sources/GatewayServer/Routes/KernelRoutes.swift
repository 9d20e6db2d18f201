import Foundation
import HTTPTypes
import Hummingbird
import JupyterProtocol

/// `/api/kernels` (jupyter_server `services/kernels/handlers.py` with EG's additions).
struct KernelRoutes {
    let registry: KernelRegistry
    let configuration: GatewayConfiguration

    static func kernelID(_ context: GatewayRequestContext) -> String {
        context.parameters.get("kernel_id") ?? ""
    }

    func list(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        guard configuration.listKernels else {
            throw GatewayError(.forbidden, reason: "Forbidden", "Listing kernels is disabled (EG_LIST_KERNELS=false)")
        }
        var models: [KernelModel] = []
        for kernel in await registry.kernels(for: context.identity) {
            models.append(await kernel.model())
        }
        return try HTTPHelpers.json(encodable: models)
    }

    func create(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let body = try await HTTPHelpers.jsonObject(request, limit: configuration.maxRequestBodySize)
        let name = try HTTPHelpers.optionalString(body, "name")
        let env = Self.owned(try KernelEnvironment.validate(body?["env"]), by: context.identity)
        let kernel = try await registry.create(name: name, clientEnv: env)
        let model = await kernel.model()
        context.logger.info("kernel created", metadata: ["kernel_id": "\(model.id)", "user": "\(kernel.username)",
                                                       "kernelspec": "\(model.name)"])
        let location = "\(configuration.baseURL)api/kernels/\(model.id)"
        return try HTTPHelpers.json(encodable: model, status: .created, headers: [.location: location])
    }

    /// A named user's kernels run as that user: the client's KERNEL_USERNAME cannot say otherwise.
    static func owned(_ env: [String: String]?, by identity: Identity) -> [String: String]? {
        guard let user = identity.user else { return env }
        var env = env ?? [:]
        env["KERNEL_USERNAME"] = user
        return env
    }

    func get(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let kernel = try await registry.kernel(Self.kernelID(context), for: context.identity)
        return try HTTPHelpers.json(encodable: await kernel.model())
    }

    func delete(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        _ = try await registry.ownedKernel(Self.kernelID(context), for: context.identity)
        try await registry.shutdown(Self.kernelID(context))
        return Response(status: .noContent)
    }

    func interrupt(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let kernel = try await registry.kernel(Self.kernelID(context), for: context.identity)
        try await kernel.interrupt()
        return Response(status: .noContent)
    }

    func restart(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let kernel = try await registry.kernel(Self.kernelID(context), for: context.identity)
        try await kernel.restart()
        return try HTTPHelpers.json(encodable: await kernel.model())
    }

    // MARK: Sharing (Ganymede's own; EG and KG have no users to share with)

    /// `GET /api/kernels/{id}/shares`: `{"owner": ..., "users": [...]}`, for the owner, an admin
    /// and the users it is shared with.
    func shares(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let kernel = try await registry.kernel(Self.kernelID(context), for: context.identity)
        return try HTTPHelpers.json(["owner": kernel.username, "users": kernel.shares.sorted()])
    }

    /// `PUT /api/kernels/{id}/shares` with `{"users": [...]}`: replaces whom the kernel is shared
    /// with. Users it is shared with may see and use it (REST, sessions, WebSocket, interrupt,
    /// restart) but not delete it or change its shares; a user removed from the list loses
    /// access at once, open WebSockets included.
    func setShares(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        guard !configuration.userTokens.isEmpty || configuration.jwt != nil else {
            throw GatewayError.badRequest("Kernel sharing needs named users (per-user tokens or JWTs); "
                + "without them every client may use every kernel")
        }
        let kernel = try await registry.ownedKernel(Self.kernelID(context), for: context.identity)
        let body = try await HTTPHelpers.jsonObject(request, limit: configuration.maxRequestBodySize)
        let users = try Self.shareList(body)
        await kernel.share(with: users.subtracting([kernel.username]))
        context.logger.info("kernel shares changed", metadata: ["kernel_id": "\(kernel.id)", "users": "\(kernel.shares.sorted())"])
        return try HTTPHelpers.json(["owner": kernel.username, "users": kernel.shares.sorted()])
    }

    static let maxShares = 1_000

    /// `{"users": [name, ...]}`: non-empty names of at most 256 characters, at most `maxShares`.
    static func shareList(_ body: [String: Any]?) throws(GatewayError) -> Set<String> {
        guard let body, let raw = body["users"] else {
            throw GatewayError.badRequest("The body must be a JSON object with \"users\": a list of user names")
        }
        guard let list = raw as? [Any], list.allSatisfy({ $0 is String }), let names = list as? [String] else {
            throw GatewayError.badRequest("\"users\" must be a list of user names (strings)")
        }
        guard names.count <= maxShares else {
            throw GatewayError.badRequest("A kernel can be shared with at most \(maxShares) users (got \(names.count))")
        }
        if let bad = names.first(where: { $0.isEmpty || $0.count > 256 || $0.contains(where: \.isNewline) }) {
            throw GatewayError.badRequest("Not a user name: \(bad.debugDescription.prefix(80))")
        }
        return Set(names)
    }
}
