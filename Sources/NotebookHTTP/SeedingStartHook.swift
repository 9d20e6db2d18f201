import Foundation
import GatewayServer
import Logging
import ServiceLifecycle

/// Kernel Gateway's jupyter-websocket extras, installed as the registry's start hook:
/// `KG_SEED_URI` runs the seed notebook's code cells in each new kernel of the notebook's
/// kernelspec (`SeedingMappingKernelManager.start_kernel`; a failing cell stops the kernel and
/// the POST fails with 500), and `KG_PRESPAWN_COUNT` keeps that many started, seeded kernels
/// ready so `POST /api/kernels` for that kernelspec returns one at once; the pool then refills.
///
/// KG only starts prespawned kernels (they are listed, and POSTs start new ones); handing them
/// out is Ganymede's addition. A request is served from the pool only when its environment
/// could not have changed the kernel: no `env`, or only `KERNEL_LAUNCH_TIMEOUT` and a
/// `KERNEL_USERNAME` equal to the pooled kernel's.
public struct SeedingStartHook: KernelStartHook {
    /// The seed notebook's code cells and the kernelspec they are for.
    public struct Seed: Sendable {
        public var kernelName: String
        public var cells: [String]
        public var source: String
    }

    public let seed: Seed?
    public let pool: PrespawnPool?
    let seedTimeout: Duration

    public init(seed: Seed?, pool: PrespawnPool?, seedTimeout: Duration = .seconds(120)) {
        self.seed = seed
        self.pool = pool
        self.seedTimeout = seedTimeout
    }

    /// Loads `KG_SEED_URI` (a local notebook); throws when it cannot be read or needs a kernel
    /// that is not installed (KG: `NoSuchKernel` at startup).
    public static func loadSeed(uri: String, configuration: GatewayConfiguration, specs: KernelSpecStore) throws(NotebookError) -> Seed {
        let document = try NotebookDocument.load(path: uri)
        let name = configuration.forceKernelName.isEmpty ? (document.kernelName ?? "") : configuration.forceKernelName
        guard !name.isEmpty else { throw NotebookError("names no kernel (metadata.kernelspec.name)", path: uri) }
        guard specs.spec(named: name) != nil else {
            throw NotebookError("needs kernelspec '\(name)', which is not installed", path: uri)
        }
        return Seed(kernelName: name, cells: document.codeCells, source: uri)
    }

    public func prepare(_ kernel: ManagedKernel) async throws(GatewayError) {
        guard let seed, kernel.spec.name == seed.kernelName, !seed.cells.isEmpty else { return }
        if let failure = await run(seed, on: kernel) { throw failure }
    }

    private func run(_ seed: Seed, on kernel: ManagedKernel) async -> GatewayError? {
        let runner: KernelRunner
        do {
            runner = try await KernelRunner.attach(kernel)
        } catch {
            return GatewayError(.internalServerError, reason: "Error seeding kernel memory", "Seed notebook \(seed.source): \(error)")
        }
        var failure: GatewayError?
        for cell in seed.cells {
            do {
                let output = try await runner.execute(cell, timeout: seedTimeout)
                if let e = output.error {
                    failure = GatewayError(.internalServerError, reason: "Error seeding kernel memory",
                                           "Seed notebook \(seed.source) raised \(e.ename): \(e.evalue)")
                }
            } catch {
                failure = GatewayError(.internalServerError, reason: "Error seeding kernel memory", "Seed notebook \(seed.source): \(error)")
            }
            if failure != nil { break }
        }
        await runner.close()
        return failure
    }

    public func claim(name: String, clientEnv: [String: String]?) async -> ManagedKernel? {
        guard let pool, name == pool.kernelName, pool.fits(clientEnv) else { return nil }
        return await pool.take()
    }
}

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
