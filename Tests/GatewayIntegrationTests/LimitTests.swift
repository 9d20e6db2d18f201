import Foundation
import Testing

/// EG_MAX_KERNELS and EG_MAX_KERNELS_PER_USER count starts in progress: concurrent POSTs
/// never overshoot (EG answered 4 × 201, 13 × 403 and 3 × 500 here for 20 against 5).
@Suite(.serialized, .timeLimit(.minutes(3)))
struct LimitTests {
    @Test func concurrentStartsRespectTheLimit() async throws {
        try await TestGateway.with(configure: { $0.maxKernels = 3 }) { gw in
            let statuses = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        let r = try await gw.request(.POST, "/api/kernels", body: #"{"name":"python3"}"#)
                        return (r.status, r.status == 403 ? r.object["message"] as? String : r.object["id"] as? String)
                    }
                }
                var out: [(Int, String?)] = []
                for try await s in group { out.append(s) }
                return out
            }
            #expect(statuses.filter { $0.0 == 201 }.count == 3)
            #expect(statuses.filter { $0.0 == 403 }.count == 5)
            #expect(statuses.allSatisfy { $0.0 == 201 || $0.0 == 403 })
            #expect(statuses.first { $0.0 == 403 }?.1?.contains("max kernels") == true)
            #expect(await gw.gateway.registry.count == 3)
            let victim = try #require(statuses.first { $0.0 == 201 }?.1)
            #expect(try await gw.request(.DELETE, "/api/kernels/\(victim)").status == 204)
            _ = try await gw.startKernel()
        }
    }

    @Test func perUserLimit() async throws {
        try await TestGateway.with(configure: { $0.maxKernelsPerUser = 1 }) { gw in
            _ = try await gw.startKernel(env: ["KERNEL_USERNAME": "alice"])
            let second = try await gw.request(.POST, "/api/kernels", body: #"{"env":{"KERNEL_USERNAME":"alice"}}"#)
            #expect(second.status == 403)
            #expect((second.object["message"] as? String)?.contains("alice") == true)
            _ = try await gw.startKernel(env: ["KERNEL_USERNAME": "bob"])
        }
    }
}
