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
        for kernel in await registry.list() where context.identity.mayUse(kernelOf: kernel.username) {
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
        _ = try await registry.kernel(Self.kernelID(context), for: context.identity)
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
}
