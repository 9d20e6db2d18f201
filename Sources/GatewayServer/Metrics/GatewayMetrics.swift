import CoreMetrics
import Foundation
import JupyterProtocol
import Metrics
import Prometheus
import Synchronization

/// The gateway's Prometheus metrics, recorded through swift-metrics with a factory of this
/// gateway's own (not the process-wide bootstrap), so several gateways in one process — the
/// in-process tests — keep separate registries.
///
/// Counters and histograms are updated where things happen; gauges of kernel state are set at
/// scrape time from the registry, so they can never drift from the truth.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory

    /// Message and byte counters per channel and direction, made up front: the relay is the
    /// hot path and must not look metrics up by label.
    private let messages: [Int: CoreMetrics.Counter]
    private let bytes: [Int: CoreMetrics.Counter]
    private let webSockets: CoreMetrics.Meter
    private let webSocketsTotal: CoreMetrics.Counter
    private let kernelGauges = Mutex<[String: CoreMetrics.Gauge]>([:])
    private let startCounters = Mutex<[String: CoreMetrics.Counter]>([:])
    private let startTimers = Mutex<[String: CoreMetrics.Timer]>([:])
    private let eventCounters = Mutex<[String: CoreMetrics.Counter]>([:])
    private let replayMessages: CoreMetrics.Gauge
    private let replayBytes: CoreMetrics.Gauge
    private let replaySessions: CoreMetrics.Gauge
    private let replayDropped: CoreMetrics.Gauge
    private let badSignatures: CoreMetrics.Gauge
    /// Every relayed message, both directions: the status page's message rate reads it.
    /// swift-metrics counters are write-only, so this plain atomic rides alongside them.
    private let relayedTotal = Atomic<Int>(0)
    private let slowClients: CoreMetrics.Gauge
    /// The process's resident set and the C heap's view of it, so a growing RSS can be told
    /// apart: memory in use (a retention) or memory freed but kept by the allocator
    /// (fragmentation, which `malloc_trim` returns).
    private let residentBytes: CoreMetrics.Gauge
    private let heapInUseBytes: CoreMetrics.Gauge
    private let heapFreeBytes: CoreMetrics.Gauge
    /// `ganymede_resource_capacity{resource}` and `ganymede_resource_allocated{resource}` for
    /// cpus, memory_bytes and gpus (the local host's ledger).
    private let resourceGauges: [String: (capacity: CoreMetrics.Gauge, allocated: CoreMetrics.Gauge)]

    public enum Direction: String, Sendable, CaseIterable {
        case toKernel = "client_to_kernel"
        case toClient = "kernel_to_client"
    }

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["ganymede_kernel_start_seconds"] = [
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(1500), .seconds(2),
            .seconds(3), .seconds(5), .seconds(10), .seconds(20), .seconds(40), .seconds(60), .seconds(120),
        ]
        self.registry = registry
        self.factory = factory
        var messages: [Int: CoreMetrics.Counter] = [:]
        var bytes: [Int: CoreMetrics.Counter] = [:]
        for channel in Channel.allCases {
            for direction in Direction.allCases {
                let dims = [("channel", channel.rawValue), ("direction", direction.rawValue)]
                messages[Self.key(channel, direction)] = CoreMetrics.Counter(label: "ganymede_messages_total", dimensions: dims, factory: factory)
                bytes[Self.key(channel, direction)] = CoreMetrics.Counter(label: "ganymede_message_bytes_total", dimensions: dims, factory: factory)
            }
        }
        self.messages = messages
        self.bytes = bytes
        webSockets = CoreMetrics.Meter(label: "ganymede_websocket_connections", factory: factory)
        webSocketsTotal = CoreMetrics.Counter(label: "ganymede_websocket_connections_total", factory: factory)
        replayMessages = CoreMetrics.Gauge(label: "ganymede_replay_buffered_messages", factory: factory)
        replayBytes = CoreMetrics.Gauge(label: "ganymede_replay_buffered_bytes", factory: factory)
        replaySessions = CoreMetrics.Gauge(label: "ganymede_replay_buffered_sessions", factory: factory)
        replayDropped = CoreMetrics.Gauge(label: "ganymede_replay_dropped_messages", factory: factory)
        badSignatures = CoreMetrics.Gauge(label: "ganymede_kernel_bad_signatures", factory: factory)
        slowClients = CoreMetrics.Gauge(label: "ganymede_slow_clients_disconnected", factory: factory)
        residentBytes = CoreMetrics.Gauge(label: "ganymede_process_resident_bytes", factory: factory)
        heapInUseBytes = CoreMetrics.Gauge(label: "ganymede_heap_in_use_bytes", factory: factory)
        heapFreeBytes = CoreMetrics.Gauge(label: "ganymede_heap_free_bytes", factory: factory)
        var resources: [String: (CoreMetrics.Gauge, CoreMetrics.Gauge)] = [:]
        for resource in ["cpus", "memory_bytes", "gpus"] {
            resources[resource] = (CoreMetrics.Gauge(label: "ganymede_resource_capacity", dimensions: [("resource", resource)], factory: factory),
                                   CoreMetrics.Gauge(label: "ganymede_resource_allocated", dimensions: [("resource", resource)], factory: factory))
        }
        resourceGauges = resources
    }

    /// Sets the resource gauges: what the host offers kernels and what granted profiles hold.
    public func update(capacity: (cpus: Double, memoryBytes: Int64, gpus: Int), allocated: (cpus: Double, memoryBytes: Int64, gpus: Int)) {
        resourceGauges["cpus"]?.capacity.record(capacity.cpus)
        resourceGauges["cpus"]?.allocated.record(allocated.cpus)
        resourceGauges["memory_bytes"]?.capacity.record(capacity.memoryBytes)
        resourceGauges["memory_bytes"]?.allocated.record(allocated.memoryBytes)
        resourceGauges["gpus"]?.capacity.record(capacity.gpus)
        resourceGauges["gpus"]?.allocated.record(allocated.gpus)
    }

    private static func key(_ channel: Channel, _ direction: Direction) -> Int {
        (Channel.allCases.firstIndex(of: channel) ?? 0) * 2 + (direction == .toKernel ? 0 : 1)
    }

    // MARK: Relay

    @inline(__always)
    public func relayed(_ channel: Channel, _ direction: Direction, bytes count: Int) {
        let k = Self.key(channel, direction)
        messages[k]?.increment()
        bytes[k]?.increment(by: count)
        relayedTotal.add(1, ordering: .relaxed)
    }

    /// Messages relayed since start, all channels and both directions (monotonic).
    public var relayedMessagesTotal: Int { relayedTotal.load(ordering: .relaxed) }

    public func webSocketOpened() {
        webSockets.increment()
        webSocketsTotal.increment()
    }

    public func webSocketClosed() { webSockets.decrement() }

    // MARK: Kernel events

    /// A start that succeeded, with its latency per provisioner.
    public func kernelStarted(kernelspec: String, provisioner: String, after duration: Duration) {
        counter(startCounters, "ganymede_kernel_starts_total", [("kernelspec", kernelspec), ("provisioner", provisioner)]).increment()
        let timer = startTimers.withLock { timers in
            if let t = timers[provisioner] { return t }
            let t = CoreMetrics.Timer(label: "ganymede_kernel_start_seconds", dimensions: [("provisioner", provisioner)], factory: factory)
            timers[provisioner] = t
            return t
        }
        timer.recordNanoseconds(Int64(duration.components.seconds) * 1_000_000_000 + Int64(duration.components.attoseconds / 1_000_000_000))
    }

    /// A start that failed, by cause (`limit`, `unauthorized`, `not_found`, `timeout`, `died`, `launch`, ...).
    public func kernelStartFailed(kernelspec: String, cause: String) {
        counter(startCounters, "ganymede_kernel_start_failures_total", [("kernelspec", kernelspec), ("cause", cause)]).increment()
    }

    /// `culled`, `restart_auto`, `restart_request`, `died`, `shutdown`.
    public func kernelEvent(_ event: String, kernelspec: String) {
        counter(eventCounters, "ganymede_kernel_events_total", [("event", event), ("kernelspec", kernelspec)]).increment()
    }

    private func counter(_ box: borrowing Mutex<[String: CoreMetrics.Counter]>, _ label: String, _ dims: [(String, String)]) -> CoreMetrics.Counter {
        let key = label + dims.map { "|\($0.0)=\($0.1)" }.joined()
        return box.withLock { counters in
            if let c = counters[key] { return c }
            let c = CoreMetrics.Counter(label: label, dimensions: dims, factory: factory)
            counters[key] = c
            return c
        }
    }

    // MARK: Scrape-time gauges

    /// One kernel's state for the scrape.
    public struct KernelSample: Sendable {
        public var state: String
        public var kernelspec: String
        public var user: String
        public var replay: (sessions: Int, messages: Int, bytes: Int)
        public var replayDropped: Int
        public var badSignatures: Int
        public var slowClientsDisconnected: Int = 0
    }

    /// Sets `ganymede_kernels{state,kernelspec,user}` and the replay gauges from a snapshot;
    /// label sets that disappeared go to zero rather than keep their last value.
    public func update(kernels: [KernelSample]) {
        var counts: [String: (dims: [(String, String)], n: Int)] = [:]
        var replay = (sessions: 0, messages: 0, bytes: 0)
        var dropped = 0
        var bad = 0
        var slow = 0
        for k in kernels {
            slow += k.slowClientsDisconnected
            let dims = [("state", k.state), ("kernelspec", k.kernelspec), ("user", k.user)]
            let key = dims.map { $0.1 }.joined(separator: "\u{1}")
            counts[key, default: (dims, 0)].n += 1
            replay.sessions += k.replay.sessions
            replay.messages += k.replay.messages
            replay.bytes += k.replay.bytes
            dropped += k.replayDropped
            bad += k.badSignatures
        }
        kernelGauges.withLock { gauges in
            for (key, gauge) in gauges where counts[key] == nil { gauge.record(0) }
            for (key, entry) in counts {
                let gauge = gauges[key] ?? CoreMetrics.Gauge(label: "ganymede_kernels", dimensions: entry.dims, factory: factory)
                gauges[key] = gauge
                gauge.record(entry.n)
            }
        }
        replaySessions.record(replay.sessions)
        replayMessages.record(replay.messages)
        replayBytes.record(replay.bytes)
        replayDropped.record(dropped)
        badSignatures.record(bad)
        slowClients.record(slow)
    }

    /// The Prometheus text exposition.
    public func exposition() -> [UInt8] {
        let memory = ProcessMemory.sample()
        residentBytes.record(memory.residentBytes)
        heapInUseBytes.record(memory.heapInUseBytes)
        heapFreeBytes.record(memory.heapFreeBytes)
        return registry.emitToBuffer()
    }
}
