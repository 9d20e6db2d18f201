import Foundation
import Logging
import Provisioning
import Synchronization

/// One `ResourceLedger` per SSH host, for admission and placement of SSH kernels by free
/// capacity. A host's capacity comes from the configuration (`remote_host_resources`) or,
/// failing that, from the host itself (`nproc`, `/proc/meminfo`, `nvidia-smi`) the first time a
/// kernel with resources is placed there; a host that cannot be asked is skipped with a reason.
final class HostLedgers: Sendable {
    private let ledgers = Mutex<[String: ResourceLedger]>([:])
    private let configured: [String: ResourceLedger.Capacity]
    private let gpuSharing: Int

    init(configured: [String: ResourceLedger.Capacity], gpuSharing: Int) {
        self.configured = configured
        self.gpuSharing = gpuSharing
    }

    func ledger(_ host: String) -> ResourceLedger? {
        ledgers.withLock { $0[host] }
    }

    var all: [String: ResourceLedger] { ledgers.withLock { $0 } }

    /// Releases so far across `hosts` (see `ResourceLedger.releaseGeneration`).
    func releaseGeneration(_ hosts: [String]) -> Int {
        hosts.compactMap { ledger($0)?.releaseGeneration }.reduce(0, +)
    }

    /// Returns when any of `hosts` releases a grant after `generation`, or at `deadline`.
    func waitForRelease(_ hosts: [String], after generation: Int, until deadline: ContinuousClock.Instant) async {
        let watched = hosts.compactMap { ledger($0).map { l in (l, l.releaseGeneration) } }
        guard releaseGeneration(hosts) == generation, !watched.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            for (l, g) in watched {
                group.addTask { await l.waitForRelease(after: g, until: deadline) }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Makes sure each host has a ledger; returns why a host has none.
    func ensure(_ hosts: [String], remote: RemoteServices, logger: Logger) async -> [String: String] {
        var problems: [String: String] = [:]
        for host in hosts where ledger(host) == nil {
            let capacity: ResourceLedger.Capacity
            if let given = configured[host] {
                capacity = given
            } else {
                do {
                    let found = try await remote.ssh.inventory(host)
                    capacity = .init(cpus: found.cpus, memoryBytes: found.memoryBytes, gpus: found.gpus)
                    logger.info("SSH host inventory", metadata: ["host": "\(host)", "cpus": "\(found.cpus)",
                                                                 "memory_bytes": "\(found.memoryBytes)", "gpus": "\(found.gpus.count)"])
                } catch {
                    problems[host] = "\(error)"
                    continue
                }
            }
            let sharing = gpuSharing
            ledgers.withLock { $0[host] = $0[host] ?? ResourceLedger(capacity: capacity, gpuSharing: sharing) }
        }
        return problems
    }
}
