import Foundation
import GatewayServer
import Logging

/// The kernels serving one notebook definition (KG's `ManagedKernelPool`, minus its one-request-
/// per-pool-slot queueing bug, KG#329): `size` kernels, each seeded with the notebook's
/// non-endpoint cells; a request borrows one exclusively, and kernels rotate round-robin as in KG.
/// Kernels that die or restart (losing their seeded state) are replaced; one that overran a
/// timeout is interrupted and checked before it serves again.
public actor KernelPool {
    public enum ReleaseState: Sendable {
        case healthy
        /// A timeout left it busy: interrupt, then check it answers before reuse.
        case overran
        case dead
    }

    let registry: KernelRegistry
    let kernelName: String
    let seedCells: [String]
    public let size: Int
    let seedTimeout: Duration
    let logger: Logger
    private var idle: [KernelRunner] = []
    private var members: [String: KernelRunner] = [:]
    private var waiters: [(id: Int, continuation: CheckedContinuation<KernelRunner, any Error>)] = []
    private var nextWaiter = 0
    private var closed = false
    private var background: [Task<Void, Never>] = []

    public init(registry: KernelRegistry, kernelName: String, seedCells: [String], size: Int,
                seedTimeout: Duration = .seconds(120), logger: Logger) {
        self.registry = registry
        self.kernelName = kernelName
        self.seedCells = seedCells
        self.size = max(1, size)
        self.seedTimeout = seedTimeout
        self.logger = logger
    }

    public var kernelIDs: [String] { members.keys.sorted() }

    /// Starts and seeds every kernel concurrently. Throws the first failure after stopping the
    /// kernels that did start (a notebook whose seed cells fail is not served).
    public func fill() async throws {
        var started: [KernelRunner] = []
        var failure: (any Error)?
        await withTaskGroup(of: Result<KernelRunner, any Error>.self) { group in
            for _ in 0..<size {
                group.addTask { [self] in
                    do { return .success(try await self.spawn()) } catch { return .failure(error) }
                }
            }
            for await result in group {
                switch result {
                case .success(let runner): started.append(runner)
                case .failure(let error): failure = failure ?? error
                }
            }
        }
        if let failure {
            for runner in started { await stop(runner) }
            throw failure
        }
        for runner in started { add(runner) }
    }

    /// Starts one kernel and runs the seed cells on it; a failing cell stops it.
    private func spawn() async throws -> KernelRunner {
        let kernel = try await registry.start(name: kernelName, clientEnv: nil)
        let runner: KernelRunner
        do {
            runner = try await KernelRunner.attach(kernel)
        } catch {
            try? await registry.shutdown(kernel.id)
            throw error
        }
        for cell in seedCells {
            let output: CellOutput
            do {
                output = try await runner.execute(cell, timeout: seedTimeout)
            } catch {
                await stop(runner)
                throw GatewayError(.internalServerError, reason: "Error seeding kernel memory", "Seed cell failed: \(error)")
            }
            if let e = output.error {
                await stop(runner)
                throw GatewayError(.internalServerError, reason: "Error seeding kernel memory",
                                   "A seed cell raised \(e.ename): \(e.evalue)")
            }
        }
        return runner
    }

    private func add(_ runner: KernelRunner) {
        guard !closed else {
            background.append(Task { await self.stop(runner) })
            return
        }
        members[runner.kernel.id] = runner
        hand(runner)
    }

    private func hand(_ runner: KernelRunner) {
        if !waiters.isEmpty {
            waiters.removeFirst().continuation.resume(returning: runner)
        } else {
            idle.append(runner)
        }
    }

    /// Borrows a kernel, waiting up to `timeout` for one (503 after that).
    public func acquire(timeout: Duration) async throws -> KernelRunner {
        guard !closed else { throw GatewayError(.serviceUnavailable, "This notebook version is no longer served") }
        while !idle.isEmpty {
            let runner = idle.removeFirst()
            // A kernel can die or be culled while it waits in the pool: replace it, try the next.
            guard await runner.deathReason != nil else { return runner }
            if members.removeValue(forKey: runner.kernel.id) != nil {
                logger.warning("idle pool kernel died; replacing it", metadata: ["kernel_id": "\(runner.kernel.id)"])
                background.append(Task { await self.replace(runner) })
            }
        }
        let id = nextWaiter
        nextWaiter += 1
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled {
                await self?.dropWaiter(id, GatewayError(.serviceUnavailable, reason: "No kernel available",
                                                        "No kernel of the pool became free within \(timeout)"))
            }
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiters.append((id, continuation))
            }
        } onCancel: {
            Task { await self.dropWaiter(id, CancellationError()) }
        }
    }

    private func dropWaiter(_ id: Int, _ error: any Error) {
        guard let i = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: i).continuation.resume(throwing: error)
    }

    /// Returns a borrowed kernel.
    public func release(_ runner: KernelRunner, _ state: ReleaseState) {
        guard members[runner.kernel.id] != nil else { return }
        if closed {
            members.removeValue(forKey: runner.kernel.id)
            background.append(Task { await self.stop(runner) })
            return
        }
        switch state {
        case .healthy:
            hand(runner)
        case .overran:
            background.append(Task { await self.recover(runner) })
        case .dead:
            members.removeValue(forKey: runner.kernel.id)
            background.append(Task { await self.replace(runner) })
        }
    }

    /// Interrupts an overrunning kernel; if an empty cell then completes, it serves again.
    private func recover(_ runner: KernelRunner) async {
        try? await runner.kernel.interrupt()
        do {
            _ = try await runner.execute("", timeout: .seconds(10))
            logger.info("pool kernel recovered after a timeout", metadata: ["kernel_id": "\(runner.kernel.id)"])
            guard !closed else { return release(runner, .healthy) }
            hand(runner)
        } catch {
            logger.warning("pool kernel did not recover after a timeout; replacing it", metadata: ["kernel_id": "\(runner.kernel.id)"])
            members.removeValue(forKey: runner.kernel.id)
            await replace(runner)
        }
    }

    /// Stops a dead or stuck kernel and starts a seeded replacement, retrying with backoff.
    private func replace(_ runner: KernelRunner) async {
        await settle(runner.kernel)
        await stop(runner)
        var delay = Duration.seconds(1)
        while !closed && !Task.isCancelled {
            do {
                let fresh = try await spawn()
                logger.info("pool kernel replaced", metadata: ["old": "\(runner.kernel.id)", "kernel_id": "\(fresh.kernel.id)"])
                add(fresh)
                return
            } catch {
                logger.error("pool kernel replacement failed; retrying", metadata: ["error": "\(error)", "retry_in": "\(delay)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(30))
            }
        }
    }

    /// Waits (bounded) while the registry auto-restarts a kernel that died: stopping it halfway
    /// through a restart could leave the new process running outside the registry.
    private func settle(_ kernel: ManagedKernel) async {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let state = await kernel.model().executionState
            if state != "restarting" && state != "starting" { return }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    private func stop(_ runner: KernelRunner) async {
        await runner.close()
        try? await registry.shutdown(runner.kernel.id)
    }

    /// Stops every kernel; waiting requests get 503. Borrowed kernels stop when released.
    public func shutdown() async {
        closed = true
        for waiter in waiters {
            waiter.continuation.resume(throwing: GatewayError(.serviceUnavailable, "This notebook version is no longer served"))
        }
        waiters.removeAll()
        let free = idle
        idle.removeAll()
        for runner in free { members.removeValue(forKey: runner.kernel.id) }
        for task in background { task.cancel() }
        await withTaskGroup(of: Void.self) { group in
            for runner in free { group.addTask { await self.stop(runner) } }
        }
    }
}
