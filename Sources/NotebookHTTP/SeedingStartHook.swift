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

    /// Loads `KG_SEED_URI` (a local notebook or an http(s) URL); throws when it cannot be read or
    /// needs a kernel that is not installed (KG: `NoSuchKernel` at startup).
    public static func loadSeed(uri: String, configuration: GatewayConfiguration, specs: KernelSpecStore) async throws(NotebookError) -> Seed {
        let document = try await NotebookDocument.load(uri: uri)
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
