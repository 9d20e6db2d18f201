import Synchronization

/// Lets exactly one of several racers through.
private final class OnceGate: Sendable {
    private let passed = Mutex(false)
    func pass() -> Bool {
        passed.withLock { done in
            defer { done = true }
            return !done
        }
    }
}

/// The first of several async results; the others are left to finish on their own.
///
/// Used where a wait cannot be cancelled (a process exit, a kernel's first reply) and a
/// task group would wait for every child.
func firstResult<T: Sendable>(_ operations: [@Sendable () async -> T]) async -> T {
    let gate = OnceGate()
    return await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        for operation in operations {
            Task {
                let value = await operation()
                if gate.pass() { continuation.resume(returning: value) }
            }
        }
    }
}
