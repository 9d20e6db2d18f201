import Foundation
@testable import GatewayServer
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The gateway pings each kernel's heartbeat socket; a stopped kernel misses pings and a
/// resumed one answers again.
@Suite(.timeLimit(.minutes(2)))
struct HeartbeatTests {
    @Test func missedAndRecoveredHeartbeats() async throws {
        try await TestGateway.with(configure: { $0.heartbeatInterval = .milliseconds(300) }) { gw in
            let id = try await gw.startKernel()
            let kernel = try await gw.gateway.registry.kernel(id)
            let connection = try #require(await kernel.connection)
            try await Task.sleep(for: .seconds(1))
            #expect(await connection.lastHeartbeat != nil)
            #expect(await connection.missedHeartbeats == 0)

            let description = await kernel.provisioner.describe()
            let pid = try #require(Int32(description.split(separator: " ").last ?? ""))
            kill(pid, SIGSTOP)
            // At least two whole intervals; polled, since a loaded machine can delay ticks.
            try await Task.sleep(for: .seconds(1))
            var missed = await connection.missedHeartbeats
            for _ in 0..<40 where missed < 2 {
                try await Task.sleep(for: .milliseconds(250))
                missed = await connection.missedHeartbeats
            }
            kill(pid, SIGCONT)
            #expect(missed >= 2, "a stopped kernel must miss heartbeats")
            var recovered = false
            for _ in 0..<40 where !recovered {
                try await Task.sleep(for: .milliseconds(250))
                recovered = await connection.missedHeartbeats == 0
            }
            #expect(recovered, "heartbeats resume after SIGCONT")
        }
    }
}
