import Foundation
import GatewayServer
import Logging
import ServiceLifecycle

/// Started, seeded kernels waiting for a `POST /api/kernels` (see `SeedingStartHook`). They are
/// ordinary registry kernels (listed, as KG lists its prespawned ones); a kernel that died or
/// was deleted meanwhile is skipped.
public actor PrespawnPool {
    public nonisolated let kernelName: String
    public nonisolated let count: Int
    nonisolated let username: String
    let registry: KernelRegistry
    let logger: Logger
    private var ready: [ManagedKernel] = []
    private var starting = 0
    private var stopped = false
    private var refills: [Task<Void, Never>] = []
    /// Claims waiting for a kernel that is being prepared.
    private var waiters: [CheckedContinuation<ManagedKernel?, Never>] = []

    public init(kernelName: String, count: Int, registry: KernelRegistry, logger: Logger) {
        self.kernelName = kernelName
        self.count = count
        self.username = registry.configuration.gatewayUsername
        self.registry = registry
        self.logger = logger
    }

    nonisolated func fits(_ env: [String: String]?) -> Bool {
        guard let env else { return true }
        return env.allSatisfy { key, value in
            key == "KERNEL_LAUNCH_TIMEOUT" || (key == "KERNEL_USERNAME" && value == username)
        }
    }

    public var readyCount: Int { ready.count }

    /// A ready kernel; when none is ready but one is being prepared, waits for that one (it is
    /// still sooner than a new start). Nil when neither; either way the pool refills.
    func take() async -> ManagedKernel? {
        defer { refill() }
        while !ready.isEmpty {
            let kernel = ready.removeFirst()
            if await usable(kernel) {
                logger.info("handing out a prespawned kernel", metadata: ["kernel_id": "\(kernel.id)"])
                return kernel
            }
        }
        guard starting > waiters.count, !stopped else { return nil }
        let kernel = await withCheckedContinuation { waiters.append($0) }
        if let kernel { logger.info("handing out a prespawned kernel", metadata: ["kernel_id": "\(kernel.id)"]) }
        return kernel
    }

    private func usable(_ kernel: ManagedKernel) async -> Bool {
        if await kernel.isDead { return false }
        return (try? await registry.kernel(kernel.id)) != nil
    }

    /// Starts kernels until `count` are ready or starting.
    func refill() {
        guard !stopped else { return }
        while ready.count + starting - waiters.count < count {
            starting += 1
            refills.append(Task { await self.startOne() })
        }
    }

    private func startOne() async {
        do {
            let kernel = try await registry.create(name: kernelName, clientEnv: nil, allowPrespawned: false)
            starting -= 1
            if stopped { return }
            if !waiters.isEmpty {
                waiters.removeFirst().resume(returning: kernel)
            } else {
                ready.append(kernel)
            }
        } catch {
            starting -= 1
            if !waiters.isEmpty { waiters.removeFirst().resume(returning: nil) }
            logger.error("prespawning a kernel failed", metadata: ["error": "\(error)"])
            // Try again later rather than in a tight loop (e.g. the kernel limit is reached).
            try? await Task.sleep(for: .seconds(5))
            if !stopped && !Task.isCancelled { refill() }
        }
    }

    public func start() { refill() }

    public func stop() {
        stopped = true
        for waiter in waiters { waiter.resume(returning: nil) }
        waiters.removeAll()
        for task in refills { task.cancel() }
        refills.removeAll()
    }
}

/// Runs the prespawn pool for the gateway's lifetime (kernels themselves are stopped by the
/// registry with all others).
public struct PrespawnService: Service {
    let pool: PrespawnPool

    public init(pool: PrespawnPool) {
        self.pool = pool
    }

    public func run() async throws {
        await pool.start()
        try? await gracefulShutdown()
        await pool.stop()
    }
}
