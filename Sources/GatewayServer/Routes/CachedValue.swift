/// A value recomputed at most once per `maxAge`; callers that arrive while it is being computed
/// share that computation instead of starting another (readiness probes from several kubelets).
actor CachedValue<Value: Sendable> {
    private var value: Value?
    private var computedAt: ContinuousClock.Instant?
    private var running: Task<Value, Never>?

    func value(maxAge: Duration, compute: @escaping @Sendable () async -> Value) async -> Value {
        if let value, let computedAt, ContinuousClock.now - computedAt < maxAge { return value }
        if let running { return await running.value }
        let task = Task { await compute() }
        running = task
        let fresh = await task.value
        value = fresh
        computedAt = .now
        running = nil
        return fresh
    }
}
