import Foundation
@testable import GatewayServer
import JupyterProtocol
import Testing

/// `/metrics` after a scripted workload, and the health probes.
@Suite(.timeLimit(.minutes(3)))
struct OperationsTests {
    /// Prometheus text format → (name, labels, value) samples.
    struct Sample {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    static func parse(_ text: String) -> [Sample] {
        var out: [Sample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.isEmpty {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let series = line[..<space]
            var labels: [String: String] = [:]
            var name = String(series)
            if let open = series.firstIndex(of: "{"), series.hasSuffix("}") {
                name = String(series[..<open])
                let body = series[series.index(after: open)..<series.index(before: series.endIndex)]
                // Values here never contain `",`; good enough for our own label values.
                for pair in body.components(separatedBy: "\",") {
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    guard kv.count == 2 else { continue }
                    labels[String(kv[0])] = kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                }
            }
            out.append(Sample(name: name, labels: labels, value: value))
        }
        return out
    }

    static func value(_ samples: [Sample], _ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.filter { s in s.name == name && labels.allSatisfy { s.labels[$0.key] == $0.value } }.reduce(0) { $0 + $1.value }
    }

    @Test func metricsAfterAWorkload() async throws {
        try await TestGateway.with(configure: { $0.authToken = "metrics-token" }) { gw in
            let auth = [("Authorization", "token metrics-token")]
            #expect(try await gw.request(.GET, "/metrics").status == 401, "metrics need the token by default")

            func start(_ user: String) async throws -> String {
                let r = try await gw.request(.POST, "/api/kernels", body: #"{"name":"python3","env":{"KERNEL_USERNAME":"\#(user)"}}"#,
                                             headers: auth)
                return try #require(r.object["id"] as? String)
            }
            let alice = try await start("alice")
            let bob = try await start("bob")
            #expect(try await gw.request(.POST, "/api/kernels", body: #"{"name":"nope"}"#, headers: auth).status == 404)

            let client = ChannelsClient(proto: .v1)
            try await client.connect(gw, kernel: alice, query: "&token=metrics-token")
            for i in 0..<3 {
                let msg = client.execute("print('line \(i)')")
                _ = await client.collect(until: msg)
            }
            let during = Self.parse(String(decoding: try await gw.request(.GET, "/metrics", headers: auth).body, as: UTF8.self))
            #expect(Self.value(during, "ganymede_websocket_connections") == 1)
            #expect(Self.value(during, "ganymede_messages_total", ["channel": "shell", "direction": "client_to_kernel"]) == 3)
            #expect(Self.value(during, "ganymede_messages_total", ["channel": "shell", "direction": "kernel_to_client"]) == 3)
            // Per execution at least busy, execute_input, stream, idle.
            #expect(Self.value(during, "ganymede_messages_total", ["channel": "iopub", "direction": "kernel_to_client"]) >= 12)
            #expect(Self.value(during, "ganymede_message_bytes_total", ["channel": "iopub", "direction": "kernel_to_client"]) > 500)
            #expect(Self.value(during, "ganymede_kernels", ["user": "alice", "kernelspec": "python3"]) == 1)
            #expect(Self.value(during, "ganymede_kernels", ["user": "bob", "state": "idle"]) == 1)
            client.close()

            #expect(try await gw.request(.POST, "/api/kernels/\(bob)/restart", headers: auth).status == 200)
            #expect(try await gw.request(.DELETE, "/api/kernels/\(bob)", headers: auth).status == 204)
            var after: [Sample] = []
            for _ in 0..<20 {
                after = Self.parse(String(decoding: try await gw.request(.GET, "/metrics", headers: auth).body, as: UTF8.self))
                if Self.value(after, "ganymede_websocket_connections") == 0 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(Self.value(after, "ganymede_websocket_connections") == 0)
            #expect(Self.value(after, "ganymede_websocket_connections_total") == 1)
            #expect(Self.value(after, "ganymede_kernel_starts_total", ["kernelspec": "python3", "provisioner": "LocalProvisioner"]) == 2)
            #expect(Self.value(after, "ganymede_kernel_start_failures_total", ["cause": "not_found"]) == 1)
            #expect(Self.value(after, "ganymede_kernel_start_seconds_count", ["provisioner": "LocalProvisioner"]) == 2)
            #expect(Self.value(after, "ganymede_kernel_events_total", ["event": "restart_request"]) == 1)
            #expect(Self.value(after, "ganymede_kernel_events_total", ["event": "shutdown"]) == 1)
            #expect(Self.value(after, "ganymede_kernels", ["user": "bob"]) == 0, "a deleted kernel's series drops to zero")
            #expect(Self.value(after, "ganymede_kernels") == 1)
        }
    }

    @Test func healthProbesNeedNoToken() async throws {
        try await TestGateway.with(configure: { $0.authToken = "t"; $0.metricsPublic = true }) { gw in
            let live = try await gw.request(.GET, "/api/health")
            #expect(live.status == 200)
            #expect(live.object["status"] as? String == "ok")
            let ready = try await gw.request(.GET, "/api/health/ready")
            #expect(ready.status == 200)
            #expect(ready.object["status"] as? String == "ready")
            #expect(try await gw.request(.GET, "/metrics").status == 200, "--metrics-public")
            #expect(try await gw.request(.GET, "/api/kernels").status == 401, "everything else still needs the token")
        }
    }

    @Test func readinessChecks() {
        #expect(HealthRoutes.checks(specCount: 2, registry: (draining: false, kernels: 3)).ok)
        let none = HealthRoutes.checks(specCount: 0, registry: (draining: false, kernels: 0))
        #expect(!none.ok)
        #expect(none.checks.contains { $0["name"] as? String == "kernelspecs" && $0["ok"] as? Bool == false })
        #expect(!HealthRoutes.checks(specCount: 2, registry: (draining: true, kernels: 0)).ok, "draining is not ready")
        #expect(!HealthRoutes.checks(specCount: 2, registry: nil).ok, "a registry that does not answer is not ready")
    }
}
