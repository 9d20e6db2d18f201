import Logging
import ServiceLifecycle

/// Starts every mount's kernels, watches the notebook files, and stops the kernels on shutdown.
/// A notebook whose kernels cannot start at launch stops the gateway (the error is logged).
struct NotebookPoolService: Service {
    let mounts: [NotebookMount]
    let reloadInterval: Duration?
    let logger: Logger

    func run() async throws {
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for mount in mounts {
                    group.addTask { try await mount.start() }
                }
                try await group.waitForAll()
            }
        } catch {
            logger.critical("a notebook's kernels failed to start", metadata: ["error": "\(error)"])
            for mount in mounts { await mount.shutdown() }
            throw error
        }
        if let interval = reloadInterval {
            // The watchers run until graceful shutdown cancels them.
            await cancelWhenGracefulShutdown {
                await withTaskGroup(of: Void.self) { group in
                    for mount in mounts {
                        group.addTask {
                            while !Task.isCancelled {
                                try? await Task.sleep(for: interval)
                                if Task.isCancelled { break }
                                await mount.reloadIfChanged()
                            }
                        }
                    }
                }
            }
        }
        try? await gracefulShutdown()
        for mount in mounts { await mount.shutdown() }
    }
}
