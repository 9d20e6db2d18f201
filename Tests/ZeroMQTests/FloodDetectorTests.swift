import Testing
import ZeroMQ

/// The rule that decides when the I/O thread batches a socket's messages: pure, no sockets.
@Suite("FloodDetector")
struct FloodDetectorTests {
    static let ms: UInt64 = 1_000_000

    /// An execute's messages (busy, execute_input, execute_reply, execute_result, idle within a
    /// few milliseconds), back to back at 250 executes a second, never count as a flood: round
    /// trips must not wait for the coalescing delay.
    @Test func executesAreNeverAFlood() {
        var d = FloodDetector()
        var now: UInt64 = 1_000 * Self.ms
        for _ in 0..<1_000 {
            for i in 0..<5 {
                let flooding = d.record(1, at: now + UInt64(i) * 200_000)
                #expect(!flooding)
            }
            now += 4 * Self.ms
        }
    }

    /// A print loop (one message every 0.3 ms) is a flood once a window holds the threshold.
    @Test func aPrintLoopBecomesAFloodWithinOneWindow() {
        var d = FloodDetector()
        var now: UInt64 = 1_000 * Self.ms
        var firstFlood: Int?
        for i in 0..<200 {
            if d.record(1, at: now), firstFlood == nil { firstFlood = i }
            now += 300_000
        }
        #expect((firstFlood ?? .max) < 80, "flood recognised after \(String(describing: firstFlood)) messages")
        #expect(d.flooding)
    }

    /// Batches count by their size: six messages per wake-up every 2 ms is still a flood, so
    /// the batching the flood causes does not switch the flood off.
    @Test func batchedArrivalsStayAFlood() {
        var d = FloodDetector()
        var now: UInt64 = 1_000 * Self.ms
        for _ in 0..<200 { _ = d.record(1, at: now); now += 300_000 }
        #expect(d.flooding)
        for _ in 0..<500 {
            let flooding = d.record(6, at: now)
            #expect(flooding)
            now += 2 * Self.ms
        }
    }

    /// When the flood stops, the next message after a quiet window is not delayed.
    @Test func aPauseEndsTheFlood() {
        var d = FloodDetector()
        var now: UInt64 = 1_000 * Self.ms
        for _ in 0..<200 { _ = d.record(1, at: now); now += 300_000 }
        #expect(d.flooding)
        now += 50 * Self.ms
        let flooding = d.record(1, at: now)
        #expect(!flooding)
    }

    /// A window that ends below the threshold ends the flood even without a long pause.
    @Test func aSlowWindowEndsTheFlood() {
        var d = FloodDetector(window: 20 * Self.ms, threshold: 40)
        var now: UInt64 = 1_000 * Self.ms
        for _ in 0..<200 { _ = d.record(1, at: now); now += 300_000 }
        #expect(d.flooding)
        // 2 messages a window for a while: the first rollover judges the busy window (still a
        // flood), the next one the slow window.
        var states: [Bool] = []
        for _ in 0..<6 {
            now += 10 * Self.ms
            states.append(d.record(1, at: now))
        }
        #expect(states.last == false, "\(states)")
    }
}
