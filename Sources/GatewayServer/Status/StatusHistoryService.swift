import Foundation
import ServiceLifecycle

/// Samples the kernel count and the message rate every `interval` into a `StatusHistory`,
/// for the status page's charts (issue #10: "kernel count and message rate over the last hour").
///
/// The rate is the difference of `GatewayMetrics.relayedMessagesTotal` between two samples over
/// the time between them (a monotonic clock, so a wall-clock jump cannot make it negative).
struct StatusHistoryService: Service {
    let registry: KernelRegistry
    let history: StatusHistory
    let interval: Duration

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var sampler = StatusSampler(total: registry.metrics.relayedMessagesTotal, at: .now)
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard !Task.isCancelled else { break }
                let states = await Self.states(of: registry)
                history.record(sampler.sample(states: states, total: registry.metrics.relayedMessagesTotal,
                                              at: .now, time: Date()))
            }
        }
    }

    /// Each kernel's `execution_state` as the REST model reports it.
    static func states(of registry: KernelRegistry) async -> [String] {
        var states: [String] = []
        for kernel in await registry.list() {
            states.append(await kernel.activity().state)
        }
        return states
    }
}

/// Turns successive readings of the relayed-message counter into samples. A value type with
/// the clock passed in, so the arithmetic is tested without waiting.
struct StatusSampler {
    private var lastTotal: Int
    private var lastInstant: ContinuousClock.Instant

    init(total: Int, at instant: ContinuousClock.Instant) {
        lastTotal = total
        lastInstant = instant
    }

    mutating func sample(states: [String], total: Int, at instant: ContinuousClock.Instant, time: Date) -> StatusSample {
        let elapsed = (instant - lastInstant).seconds
        // The counter only grows; a smaller reading would be a bug elsewhere, not negative traffic.
        let delta = max(0, total - lastTotal)
        let rate = elapsed > 0 ? Double(delta) / elapsed : 0
        lastTotal = total
        lastInstant = instant
        let busy = states.filter { $0 == "busy" }.count
        let idle = states.filter { $0 == "idle" }.count
        return StatusSample(time: time, kernels: states.count, busy: busy, idle: idle,
                            other: states.count - busy - idle, messagesPerSecond: rate)
    }
}
