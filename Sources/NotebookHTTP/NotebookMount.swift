import Foundation
import GatewayServer
import Logging

/// One notebook served under a URL prefix. Requests run on the current *generation* (definition
/// plus kernel pool). When the file changes, a new generation is built and seeded beside the old
/// one, then swapped in; requests already running finish on the old generation, whose kernels
/// stop once the last of them is done. A changed file that does not load keeps the old one.
public actor NotebookMount {
    /// One version of the notebook with its kernels.
    public final class Generation: Sendable {
        public let number: Int
        public let definition: NotebookDefinition
        public let pool: KernelPool

        init(number: Int, definition: NotebookDefinition, pool: KernelPool) {
            self.number = number
            self.definition = definition
            self.pool = pool
        }
    }

    public nonisolated let prefix: String
    public nonisolated let path: String
    let settings: NotebookHTTPConfiguration
    let registry: KernelRegistry
    let logger: Logger
    private var current: Generation
    private var inFlight: [Int: Int] = [:]
    private var retired: [Int: Generation] = [:]
    private var lastAttempt: [UInt8]
    private var fileStamp: FileStamp?

    /// Checks that the loaded notebook can be served (throws if not) without starting kernels
    /// yet. Local files are watched for changes; URLs are read once.
    public init(prefix: String, path: String, document: NotebookDocument, settings: NotebookHTTPConfiguration,
                registry: KernelRegistry, logger: Logger) throws(NotebookError) {
        self.prefix = prefix
        self.path = path
        self.settings = settings
        self.registry = registry
        var logger = logger
        logger[metadataKey: "notebook"] = "\(path)"
        self.logger = logger
        let definition = try Self.definition(document, path: path, settings: settings, registry: registry)
        for warning in definition.warnings { logger.warning("\(warning)") }
        current = Generation(number: 1, definition: definition, pool: Self.pool(for: definition, settings: settings, registry: registry, logger: logger))
        lastAttempt = definition.document.bytes
        fileStamp = FileStamp(path: NotebookDocument.localPath(path))
    }

    static func definition(_ document: NotebookDocument, path: String, settings: NotebookHTTPConfiguration,
                           registry: KernelRegistry) throws(NotebookError) -> NotebookDefinition {
        let definition = try NotebookDefinition(document: document, source: path, forceKernelName: settings.forceKernelName,
                                                cellParser: settings.cellParser)
        // KG's `_load_notebook` refuses a notebook whose kernel is not installed (NoSuchKernel).
        guard registry.specs.spec(named: definition.kernelName) != nil else {
            throw NotebookError("needs kernelspec '\(definition.kernelName)', which is not installed", path: path)
        }
        return definition
    }

    static func pool(for definition: NotebookDefinition, settings: NotebookHTTPConfiguration, registry: KernelRegistry,
                     logger: Logger) -> KernelPool {
        KernelPool(registry: registry, kernelName: definition.kernelName, seedCells: definition.seedCells,
                   size: settings.prespawnCount, seedTimeout: settings.seedTimeout, logger: logger)
    }

    /// Starts the first generation's kernels.
    public func start() async throws {
        try await current.pool.fill()
        logger.info("notebook served", metadata: ["prefix": "\(prefix)", "kernels": "\(current.pool.size)",
                                                  "endpoints": "\(current.definition.endpoints.count)"])
    }

    /// The generation a new request runs on, counted until `end`.
    public func begin() -> Generation {
        inFlight[current.number, default: 0] += 1
        return current
    }

    public func end(_ generation: Generation) async {
        let left = (inFlight[generation.number] ?? 1) - 1
        inFlight[generation.number] = left
        if left <= 0 { inFlight.removeValue(forKey: generation.number) }
        if left <= 0, let old = retired.removeValue(forKey: generation.number) {
            logger.info("previous notebook version drained; stopping its kernels", metadata: ["generation": "\(old.number)"])
            await old.pool.shutdown()
        }
    }

    public var generationNumber: Int { current.number }

    /// Checks the file and reloads it when its content changed. Returns true after a swap.
    @discardableResult
    public func reloadIfChanged() async -> Bool {
        let local = NotebookDocument.localPath(path)
        let stamp = FileStamp(path: local)
        guard stamp != fileStamp else { return false }
        fileStamp = stamp
        guard let data = FileManager.default.contents(atPath: local) else { return false }
        let bytes = Array(data)
        guard bytes != lastAttempt else { return false }
        lastAttempt = bytes
        let definition: NotebookDefinition
        do {
            definition = try Self.definition(try NotebookDocument.parse(bytes), path: path, settings: settings, registry: registry)
        } catch {
            logger.error("changed notebook not loaded; still serving the previous version", metadata: ["error": "\(error)"])
            return false
        }
        let pool = Self.pool(for: definition, settings: settings, registry: registry, logger: logger)
        do {
            try await pool.fill()
        } catch {
            logger.error("changed notebook's kernels failed to start; still serving the previous version", metadata: ["error": "\(error)"])
            return false
        }
        let next = Generation(number: current.number + 1, definition: definition, pool: pool)
        let old = current
        current = next
        logger.info("notebook reloaded", metadata: ["generation": "\(next.number)", "endpoints": "\(definition.endpoints.count)"])
        if inFlight[old.number, default: 0] == 0 {
            await old.pool.shutdown()
        } else {
            retired[old.number] = old
        }
        return true
    }

    /// Stops every generation's kernels (gateway shutdown).
    public func shutdown() async {
        let all = [current] + Array(retired.values)
        retired.removeAll()
        for generation in all { await generation.pool.shutdown() }
    }
}

/// What changes when a file is rewritten: modification time, size, inode.
struct FileStamp: Equatable {
    var modified: Date?
    var size: Int?
    var inode: Int?

    init?(path: String) {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return nil }
        modified = attributes[.modificationDate] as? Date
        size = (attributes[.size] as? NSNumber)?.intValue
        inode = (attributes[.systemFileNumber] as? NSNumber)?.intValue
    }
}
