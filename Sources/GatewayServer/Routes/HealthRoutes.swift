import Foundation
import Hummingbird
import NIOCore

/// Probes and metrics for operators (EG has none: EG#731).
///
/// - `GET /api/health`: liveness. 200 while the process serves HTTP; no token needed, so a
///   Kubernetes `livenessProbe` can call it.
/// - `GET /api/health/ready`: readiness. 200 when kernelspecs are loaded, the kernel registry
///   answers within a second and the gateway is not draining, and, when remote kernelspecs are
///   loaded, the launcher response listener is bound and their SSH hosts and Slurm controller
///   answer; 503 otherwise, with each check and why, so a `readinessProbe` takes the pod out of
///   the Service while it stops or while its backends are away.
/// - `GET /metrics`: Prometheus text format (token-protected unless `--metrics-public`).
struct HealthRoutes {
    let registry: KernelRegistry
    let startedAt: Date

    func liveness(_ request: Request, _ context: GatewayRequestContext) throws -> Response {
        try HTTPHelpers.json(["status": "ok", "gateway_version": ganymedeVersion,
                              "uptime_seconds": Int(Date().timeIntervalSince(startedAt))] as [String: Any])
    }

    func readiness(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let registry = self.registry
        let answer: (draining: Bool, kernels: Int)? = await firstResult([
            { @Sendable in (await registry.isShuttingDown, await registry.count) },
            { @Sendable in try? await Task.sleep(for: .seconds(1)); return nil },
        ])
        var (ok, checks) = Self.checks(specCount: registry.specs.all.count, registry: answer)
        for backend in await registry.backendReadiness() {
            checks.append(["name": backend.name, "ok": backend.ok, "detail": backend.detail, "required": backend.required])
            if backend.required { ok = ok && backend.ok }
        }
        return try HTTPHelpers.json(["status": ok ? "ready" : "not ready", "checks": checks] as [String: Any],
                                    status: ok ? .ok : .serviceUnavailable)
    }

    /// The readiness verdict from what was observed; `registry` is nil when it did not answer.
    static func checks(specCount: Int, registry answer: (draining: Bool, kernels: Int)?) -> (ok: Bool, checks: [[String: Any]]) {
        var checks: [[String: Any]] = []
        checks.append(["name": "kernelspecs", "ok": specCount > 0,
                       "detail": specCount > 0 ? "\(specCount) kernelspec(s) loaded" : "no kernelspec found"])
        if let answer {
            checks.append(["name": "registry", "ok": true, "detail": "\(answer.kernels) kernel(s)"])
            checks.append(["name": "accepting", "ok": !answer.draining,
                           "detail": answer.draining ? "shutting down" : "accepting kernel starts"])
        } else {
            checks.append(["name": "registry", "ok": false, "detail": "kernel registry did not answer within 1 s"])
        }
        return (checks.allSatisfy { $0["ok"] as? Bool == true }, checks)
    }

    func metrics(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        await registry.sampleMetrics()
        let body = registry.metrics.exposition()
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
