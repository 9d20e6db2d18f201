/// Tells an output flood from ordinary traffic by one socket's message rate over a short window.
///
/// Why: the I/O thread relays each message as it arrives, and a kernel printing in a loop sends
/// its messages 0.1–0.5 ms apart, so every thread of the relay (this one, the kernel's actor,
/// the WebSocket writers, the event loop) wakes once per message. Measured on 2 cores
/// (Benchmarks/analysis.md, sections 1 and 2), that costs the gateway ~130 µs of CPU per printed
/// line, CPU the kernel producing the flood then lacks. When a socket is flooding, the I/O thread
/// waits a moment before it polls again, so each wake-up carries a batch. An execute's five or six
/// messages never reach the threshold, so round trips are not delayed. The wait is the whole
/// thread's: while one kernel floods, other kernels' messages can be held up to the wait too.
public struct FloodDetector: Sendable, Equatable {
    /// The window over which messages are counted, in nanoseconds.
    public let window: UInt64
    /// Messages in one window from which a socket counts as flooding.
    public let threshold: Int
    private var windowStart: UInt64 = 0
    private var count = 0
    public private(set) var flooding = false

    public init(window: UInt64 = 20_000_000, threshold: Int = 40) {
        self.window = window
        self.threshold = threshold
    }

    /// Records `messages` received at `now` (monotonic nanoseconds); true while the socket floods.
    ///
    /// A flood starts as soon as one window holds `threshold` messages and lasts while each
    /// following window does; a window that ends short, or a gap of more than a window, ends it.
    public mutating func record(_ messages: Int, at now: UInt64) -> Bool {
        let elapsed = now &- windowStart
        if elapsed >= window {
            flooding = elapsed < 2 * window && count >= threshold
            windowStart = now
            count = 0
        }
        count += messages
        if count >= threshold { flooding = true }
        return flooding
    }
}
