import Provisioning
import Foundation
import Hummingbird

/// `GET /api/resources`: the profiles on offer, the host's capacity, what is in use and each
/// kernel's grant (issue: "shows profiles, capacity and what is in use per host"; local host
/// only until remote placement exists).
struct ResourceRoutes {
    let registry: KernelRegistry

    func get(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        struct Body: Encodable {
            var profiles: [String: ResourceRequest]
            var allowCustom: Bool
            var hosts: [String: Host]
            var queued: Int
            var gpuSharing: Int
            enum CodingKeys: String, CodingKey { case profiles, allowCustom = "allow_custom", hosts, queued, gpuSharing = "gpu_sharing" }
        }
        struct Host: Encodable {
            var capacity: ResourceLedger.Capacity
            var inUse: ResourceRequest
            var kernels: [String: ResourceLedger.Grant]
            enum CodingKeys: String, CodingKey { case capacity, inUse = "in_use", kernels }
        }
        let configuration = await registry.current  // profiles follow SIGHUP reloads
        let ledger = registry.ledger
        var hosts = ["localhost": Host(capacity: ledger.capacity, inUse: ledger.inUse, kernels: ledger.allGrants)]
        for (name, l) in registry.hostLedgers.all {
            hosts[name] = Host(capacity: l.capacity, inUse: l.inUse, kernels: l.allGrants)
        }
        return try HTTPHelpers.json(encodable: Body(profiles: configuration.resourceProfiles,
                                                    allowCustom: configuration.allowCustomResources, hosts: hosts,
                                                    queued: await registry.queuedStarts, gpuSharing: ledger.gpuSharing))
    }
}
