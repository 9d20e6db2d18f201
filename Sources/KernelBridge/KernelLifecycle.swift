/// The lifecycle of one kernel as a value-type state machine.
///
/// `starting → running → (restarting → starting) → terminating → dead`. Transitions return
/// whether they were legal; the owner (the kernel registry) acts on the new state.
public struct KernelLifecycle: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        /// Launched; waiting for the process and its first `kernel_info_reply`.
        case starting
        /// Up; `execution_state` comes from iopub.
        case running
        /// Being restarted (by request or automatically after a death).
        case restarting
        /// Shutdown requested.
        case terminating
        /// Gone, with the reason.
        case dead(reason: String)
    }

    public private(set) var state: State = .starting

    public init() {}

    public var isDead: Bool {
        if case .dead = state { return true }
        return false
    }

    /// The REST model's `execution_state` when no iopub status is more telling.
    public var restState: String? {
        switch state {
        case .starting: "starting"
        case .restarting: "restarting"
        case .terminating: "terminating"
        case .dead: "dead"
        case .running: nil
        }
    }

    @discardableResult
    public mutating func started() -> Bool {
        guard state == .starting || state == .restarting else { return false }
        state = .running
        return true
    }

    @discardableResult
    public mutating func beginRestart() -> Bool {
        switch state {
        case .running, .starting:
            state = .restarting
            return true
        default:
            return false
        }
    }

    @discardableResult
    public mutating func beginTermination() -> Bool {
        switch state {
        case .terminating, .dead: return false
        default:
            state = .terminating
            return true
        }
    }

    public mutating func died(reason: String) {
        state = .dead(reason: reason)
    }
}
