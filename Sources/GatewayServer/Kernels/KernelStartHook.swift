import Foundation

/// Work done on kernels before a client gets them, and kernels started ahead of demand:
/// Kernel Gateway's seed notebook (`KG_SEED_URI`, kernel_gateway `services/kernels/manager.py`
/// `SeedingMappingKernelManager.start_kernel`) and prespawned kernels (`KG_PRESPAWN_COUNT`).
/// The NotebookHTTP target implements it; the executable installs it with `setStartHook`.
public protocol KernelStartHook: Sendable {
    /// Runs on every kernel started for a client before the client gets it. Throwing stops the
    /// kernel and fails the request with the error (KG: "Error seeding kernel memory", 500).
    func prepare(_ kernel: ManagedKernel) async throws(GatewayError)
    /// An already started and prepared kernel that fits the request, or nil to start a new one.
    func claim(name: String, clientEnv: [String: String]?) async -> ManagedKernel?
}

extension KernelRegistry {
    public func setStartHook(_ hook: (any KernelStartHook)?) {
        startHook = hook
    }

    /// Starts a kernel for a client (`POST /api/kernels`, `POST /api/sessions`): applies
    /// `KG_FORCE_KERNEL_NAME`, hands out a prespawned kernel when one fits, and runs the start
    /// hook (seeding) on a new one. `allowPrespawned: false` is how the prespawn pool refills.
    public func create(name: String?, clientEnv: [String: String]?, allowPrespawned: Bool = true) async throws(GatewayError) -> ManagedKernel {
        let forced = configuration.forceKernelName
        let requested = forced.isEmpty ? name : forced
        let specName = (requested?.isEmpty == false ? requested! : configuration.defaultKernelName)
        let hook = startHook
        if allowPrespawned, let hook, let kernel = await hook.claim(name: specName, clientEnv: clientEnv) {
            return kernel
        }
        let kernel = try await start(name: specName, clientEnv: clientEnv)
        guard let hook else { return kernel }
        do {
            try await hook.prepare(kernel)
        } catch {
            try? await shutdown(kernel.id)
            throw error
        }
        return kernel
    }
}
