import Foundation
import Synchronization

/// One point of the status page's charts: the kernels by state and the message rate over the
/// interval that ended at `time`.
///
/// Fixed fields rather than a dictionary of states, so that a sample has a fixed size and the
/// ring's memory is bounded however many kernels or states there are.
public struct StatusSample: Sendable, Equatable {
    /// Wall-clock end of the interval.
    public var time: Date
    public var kernels: Int
    public var busy: Int
    public var idle: Int
    /// Starting, restarting, terminating, dead or unknown.
    public var other: Int
    /// Relayed messages per second (both directions, all channels) over the interval.
    public var messagesPerSecond: Double

    public init(time: Date, kernels: Int, busy: Int, idle: Int, other: Int, messagesPerSecond: Double) {
        self.time = time
        self.kernels = kernels
        self.busy = busy
        self.idle = idle
        self.other = other
        self.messagesPerSecond = messagesPerSecond
    }
}

/// The last `capacity` samples (360 × 10 s = one hour by default) in a fixed ring: recording
/// never allocates once the ring is full, and the oldest sample is overwritten.
///
/// A `Mutex` rather than an actor: the sampler writes every few seconds and page renders
/// read a copy, both in O(capacity) at most, so there is nothing worth suspending for.
public final class StatusHistory: Sendable {
    public static let defaultCapacity = 360

    public let capacity: Int
    private let ring: Mutex<Ring>

    struct Ring {
        var storage: [StatusSample] = []
        /// Where the next sample goes once `storage` is full.
        var next = 0
    }

    public init(capacity: Int = StatusHistory.defaultCapacity) {
        precondition(capacity > 0, "a status history needs room for at least one sample")
        self.capacity = capacity
        var ring = Ring()
        ring.storage.reserveCapacity(capacity)
        self.ring = Mutex(ring)
    }

    public func record(_ sample: StatusSample) {
        let capacity = self.capacity
        ring.withLock { ring in
            if ring.storage.count < capacity {
                ring.storage.append(sample)
            } else {
                ring.storage[ring.next] = sample
            }
            ring.next = (ring.next + 1) % capacity
        }
    }

    /// The samples, oldest first.
    public var samples: [StatusSample] {
        let capacity = self.capacity
        return ring.withLock { ring in
            guard ring.storage.count == capacity else { return ring.storage }
            return Array(ring.storage[ring.next...] + ring.storage[..<ring.next])
        }
    }

    public var count: Int { ring.withLock { $0.storage.count } }
}
