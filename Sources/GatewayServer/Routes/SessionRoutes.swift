import Foundation
import HTTPTypes
import Hummingbird

/// An in-memory session record (jupyter_server `SessionManager`, as EG and KG keep it).
struct SessionRecord: Sendable {
    var id: String
    var path: String
    var name: String
    var type: String
    var kernelID: String
}

actor SessionStore {
    private var sessions: [String: SessionRecord] = [:]
    func all() -> [SessionRecord] { sessions.values.sorted { $0.id < $1.id } }
    func get(_ id: String) -> SessionRecord? { sessions[id] }
    func put(_ record: SessionRecord) { sessions[record.id] = record }
    func remove(_ id: String) -> SessionRecord? { sessions.removeValue(forKey: id) }
    /// Drops sessions whose kernel is gone.
    func prune(keeping alive: Set<String>) { sessions = sessions.filter { alive.contains($0.value.kernelID) } }
}

/// `/api/sessions` CRUD as EG serves it (jupyter_server 1.x session handlers).
struct SessionRoutes {
    let registry: KernelRegistry
    let store: SessionStore
    let configuration: GatewayConfiguration

    func model(_ record: SessionRecord) async throws -> [String: Any] {
        let kernel = try await registry.kernel(record.kernelID)
        let data = try JSONEncoder().encode(await kernel.model())
        let kernelModel = try JSONSerialization.jsonObject(with: data)
        let notebook: [String: String] = ["path": record.path, "name": record.name]
        var out: [String: Any] = [:]
        out["id"] = record.id
        out["path"] = record.path
        out["name"] = record.name
        out["type"] = record.type
        out["kernel"] = kernelModel
        out["notebook"] = notebook
        return out
    }

    private func pruned() async {
        var alive = Set<String>()
        for k in await registry.list() { alive.insert(k.id) }
        await store.prune(keeping: alive)
    }

    func list(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        guard configuration.listKernels else {
            throw GatewayError(.forbidden, reason: "Forbidden", "Listing sessions is disabled (EG_LIST_KERNELS=false)")
        }
        await pruned()
        var out: [[String: Any]] = []
        for record in await store.all() {
            guard (try? await registry.kernel(record.kernelID, for: context.identity)) != nil else { continue }
            if let m = try? await model(record) { out.append(m) }
        }
        return try HTTPHelpers.json(out)
    }

    func create(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let body = try await HTTPHelpers.jsonObject(request, limit: configuration.maxRequestBodySize) ?? [:]
        var path: String? = try HTTPHelpers.optionalString(body, "path")
        if path == nil, let notebook = body["notebook"] as? [String: Any] {
            path = try HTTPHelpers.optionalString(notebook, "path")
        }
        guard let path else { throw GatewayError.badRequest("Missing field in JSON data: path") }
        guard let type = try HTTPHelpers.optionalString(body, "type") else {
            throw GatewayError.badRequest("Missing field in JSON data: type")
        }
        let name = try HTTPHelpers.optionalString(body, "name") ?? ""
        let kernelSpec = body["kernel"]
        guard kernelSpec == nil || kernelSpec is NSNull || kernelSpec is [String: Any] else {
            throw GatewayError.badRequest("'kernel' must be an object")
        }
        let kernelBody = kernelSpec as? [String: Any]
        let kernelID: String
        if let existing = try HTTPHelpers.optionalString(kernelBody, "id") {
            kernelID = try await registry.kernel(existing, for: context.identity).id
        } else {
            let kernelName = try HTTPHelpers.optionalString(kernelBody, "name")
            kernelID = try await registry.create(name: kernelName, clientEnv: KernelRoutes.owned(nil, by: context.identity)).id
        }
        let record = SessionRecord(id: UUID().uuidString.lowercased(), path: path, name: name, type: type, kernelID: kernelID)
        await store.put(record)
        let location = "\(configuration.baseURL)api/sessions/\(record.id)"
        return try HTTPHelpers.json(try await model(record), status: .created, headers: [.location: location])
    }

    /// The session, if its kernel is one the request's identity may use (else 404, as missing).
    func record(_ context: GatewayRequestContext) async throws -> SessionRecord {
        let id = context.parameters.get("session_id") ?? ""
        guard let record = await store.get(id) else { throw GatewayError.notFound("Session not found: \(id)") }
        if let k = try? await registry.kernel(record.kernelID), !k.mayBeUsed(by: context.identity) {
            throw GatewayError.notFound("Session not found: \(id)")
        }
        return record
    }

    func get(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let r = try await record(context)
        guard (try? await registry.kernel(r.kernelID)) != nil else {
            _ = await store.remove(r.id)
            throw GatewayError.notFound("Session not found: \(r.id) (its kernel is gone)")
        }
        return try HTTPHelpers.json(try await model(r))
    }

    func patch(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        var r = try await record(context)
        let body = try await HTTPHelpers.jsonObject(request, limit: configuration.maxRequestBodySize) ?? [:]
        if let path = try HTTPHelpers.optionalString(body, "path") { r.path = path }
        if let name = try HTTPHelpers.optionalString(body, "name") { r.name = name }
        if let type = try HTTPHelpers.optionalString(body, "type") { r.type = type }
        if let kernel = body["kernel"] as? [String: Any] {
            if let id = try HTTPHelpers.optionalString(kernel, "id") {
                r.kernelID = try await registry.kernel(id, for: context.identity).id
            } else if let name = try HTTPHelpers.optionalString(kernel, "name") {
                let old = r.kernelID
                try await requireOwner(of: old, context)
                r.kernelID = try await registry.create(name: name, clientEnv: KernelRoutes.owned(nil, by: context.identity)).id
                try? await registry.shutdown(old)
            }
        }
        await store.put(r)
        return try HTTPHelpers.json(try await model(r))
    }

    /// Deleting a session, or replacing its kernel, shuts the kernel down: its owner's (or an
    /// admin's) call, not that of a user it is shared with (403). A kernel already gone is nobody's.
    private func requireOwner(of kernelID: String, _ context: GatewayRequestContext) async throws {
        guard (try? await registry.kernel(kernelID)) != nil else { return }
        _ = try await registry.ownedKernel(kernelID, for: context.identity)
    }

    func delete(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let r = try await record(context)
        try await requireOwner(of: r.kernelID, context)
        _ = await store.remove(r.id)
        guard (try? await registry.kernel(r.kernelID)) != nil else {
            throw GatewayError(.gone, "Kernel \(r.kernelID) of session \(r.id) no longer exists")
        }
        try await registry.shutdown(r.kernelID)
        return Response(status: .noContent)
    }
}
