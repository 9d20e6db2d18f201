import Provisioning
import Foundation
import Logging
import Synchronization

/// What the gateway host offers and what its kernels hold: admission control for local
/// kernels. A start that does not fit is refused with 503 naming what is short; every kind of
/// kernel end (shutdown, cull, final death, failed start) releases its grant. Synchronous (a
/// lock, not an actor), so the registry can admit without a suspension point between its
/// limit checks and registering the kernel.
public final class ResourceLedger: Sendable {
    public struct Capacity: Sendable, Codable {
        public var cpus: Double
        public var memoryBytes: Int64
        public var gpus: [GPUDevice]

        public init(cpus: Double, memoryBytes: Int64, gpus: [GPUDevice] = []) {
            self.cpus = cpus
            self.memoryBytes = memoryBytes
            self.gpus = gpus
        }

        enum CodingKeys: String, CodingKey { case cpus, memoryBytes = "memory_bytes", gpus }
    }

    /// What one kernel holds: its request and, for GPUs, the devices it was given.
    public struct Grant: Sendable, Codable, Equatable {
        public var request: ResourceRequest
        public var gpuIndices: [Int]

        enum CodingKeys: String, CodingKey { case request, gpuIndices = "gpus" }
    }

    public let capacity: Capacity
    /// How many kernels may hold one GPU at once (`gpu_sharing`; 1 = exclusive).
    public let gpuSharing: Int
    private let state = Mutex<[String: Grant]>([:])
    /// Starts waiting for a release (queued admission), and a count of releases so that one
    /// happening between a refused admission and the wait is not missed.
    private let releases = Mutex<(generation: Int, nextToken: Int, waiters: [Int: CheckedContinuation<Void, Never>],
                                  expired: Set<Int>)>((0, 0, [:], []))

    public init(capacity: Capacity, gpuSharing: Int = 1) {
        self.capacity = capacity
        self.gpuSharing = max(1, gpuSharing)
    }

    /// The host as it is: online CPUs, physical memory, and GPUs from `nvidia-smi` when it is
    /// on the gateway's PATH (none otherwise).
    public static func discover(environment: [String: String], logger: Logger) -> Capacity {
        Capacity(cpus: Double(ProcessInfo.processInfo.activeProcessorCount),
                 memoryBytes: Int64(ProcessInfo.processInfo.physicalMemory),
                 gpus: discoverGPUs(path: environment["PATH"], logger: logger))
    }

    static func discoverGPUs(path: String?, logger: Logger) -> [GPUDevice] {
        let dirs = (path ?? "/usr/bin:/bin").split(separator: ":")
        let candidates: [String] = dirs.map { dir in "\(dir)/nvidia-smi" }
        guard let smi = candidates.first(where: { path in access(path, X_OK) == 0 }) else { return [] }
        var attempt = 0
        while true {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: smi)
            process.arguments = GPUDevice.nvidiaSMIArguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            do {
                try process.run()
            } catch {
                // ETXTBSY: the executable was just written and a process forked meanwhile (any
                // kernel start) still holds its write descriptor; it goes away within
                // milliseconds, so try again a few times instead of reporting no GPUs.
                attempt += 1
                let posix = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError)?.code
                if attempt < 10, posix == Int(ETXTBSY) {
                    usleep(20_000)
                    continue
                }
                logger.warning("nvidia-smi failed", metadata: ["error": "\(error)"])
                return []
            }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { return [] }
            return GPUDevice.parse(String(decoding: data, as: UTF8.self))
        }
    }

    public var inUse: ResourceRequest { state.withLock { Self.used($0) } }

    static func used(_ grants: [String: Grant]) -> ResourceRequest {
        var r = ResourceRequest(cpus: 0, memoryBytes: 0, gpus: 0)
        for g in grants.values {
            r.cpus! += g.request.cpus ?? 0
            r.memoryBytes! += g.request.memoryBytes ?? 0
            r.gpus! += g.gpuIndices.count
        }
        return r
    }

    public var allGrants: [String: Grant] { state.withLock { $0 } }

    /// Capacity minus what grants hold (GPU slots not counted).
    public var free: ResourceRequest {
        let used = inUse
        return ResourceRequest(cpus: capacity.cpus - (used.cpus ?? 0), memoryBytes: capacity.memoryBytes - (used.memoryBytes ?? 0))
    }

    /// Admits the request or says what is short (503, as the start may succeed later).
    public func reserve(kernelID: String, _ request: ResourceRequest) throws(GatewayError) -> Grant {
        let result: Result<Grant, GatewayError> = state.withLock { grants in
            do throws(GatewayError) {
                let grant = try Self.admit(request, grants: grants, capacity: capacity, gpuSharing: gpuSharing)
                grants[kernelID] = grant
                return .success(grant)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    static func admit(_ request: ResourceRequest, grants: [String: Grant], capacity: Capacity,
                      gpuSharing: Int = 1) throws(GatewayError) -> Grant {
        let used = Self.used(grants)
        if let cpus = request.cpus, (used.cpus ?? 0) + cpus > capacity.cpus + 1e-9 {
            throw Self.short("CPUs", asked: Quantity.format(cpus), free: Quantity.format(capacity.cpus - (used.cpus ?? 0)),
                             total: Quantity.format(capacity.cpus))
        }
        if let mem = request.memoryBytes, (used.memoryBytes ?? 0) + mem > capacity.memoryBytes {
            throw Self.short("memory", asked: Quantity.formatBytes(mem),
                             free: Quantity.formatBytes(capacity.memoryBytes - (used.memoryBytes ?? 0)),
                             total: Quantity.formatBytes(capacity.memoryBytes))
        }
        var devices: [Int] = []
        if let n = request.gpus, n > 0 {
            // Distinct devices for one kernel; with sharing, the least used ones first.
            var uses: [Int: Int] = [:]
            for index in grants.values.flatMap(\.gpuIndices) { uses[index, default: 0] += 1 }
            let free = capacity.gpus.map(\.index).filter { (uses[$0] ?? 0) < gpuSharing }
                .sorted { (uses[$0] ?? 0, $0) < (uses[$1] ?? 0, $1) }
            guard free.count >= n else {
                let what = gpuSharing > 1 ? "GPUs (each shared by up to \(gpuSharing) kernels)" : "GPUs"
                throw Self.short(what, asked: "\(n)", free: "\(free.count)", total: "\(capacity.gpus.count)")
            }
            devices = Array(free.prefix(n))
        }
        return Grant(request: request, gpuIndices: devices)
    }

    public func release(kernelID: String) {
        guard state.withLock({ $0.removeValue(forKey: kernelID) }) != nil else { return }
        let woken = releases.withLock { r in
            r.generation += 1
            defer { r.waiters.removeAll() }
            return Array(r.waiters.values)
        }
        for waiter in woken { waiter.resume() }
    }

    /// Releases so far; pass it to `waitForRelease` to catch one that happens in between.
    public var releaseGeneration: Int { releases.withLock { $0.generation } }

    /// Returns when a grant is released after `generation`, or at `deadline`.
    public func waitForRelease(after generation: Int, until deadline: ContinuousClock.Instant) async {
        let token: Int? = releases.withLock { r in
            guard r.generation == generation else { return nil }
            r.nextToken += 1
            return r.nextToken
        }
        guard let token else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let resumeNow = self.releases.withLock { r -> Bool in
                        // Released meanwhile, or the deadline passed before this registered.
                        guard r.generation == generation, r.expired.remove(token) == nil else { return true }
                        r.waiters[token] = c
                        return false
                    }
                    if resumeNow { c.resume() }
                }
            }
            group.addTask {
                try? await Task.sleep(until: deadline)
                let waiter = self.releases.withLock { r -> CheckedContinuation<Void, Never>? in
                    if let w = r.waiters.removeValue(forKey: token) { return w }
                    r.expired.insert(token)
                    return nil
                }
                waiter?.resume()
            }
            await group.next()
            group.cancelAll()
        }
        _ = releases.withLock { $0.expired.remove(token) }
    }

    static func short(_ what: String, asked: String, free: String, total: String) -> GatewayError {
        GatewayError(.serviceUnavailable, reason: "Insufficient resources",
                     "Not enough \(what) on this host: asked for \(asked), \(free) free of \(total). Try again when a kernel ends, or ask for less.")
    }
}
