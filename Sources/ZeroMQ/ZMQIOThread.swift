import CZeroMQ
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Owns every ZeroMQ socket of the process and the one thread that touches them.
///
/// libzmq sockets are not thread-safe and their calls block, so none may run on a NIO event
/// loop or on Swift's cooperative pool. All socket work happens here: callers enqueue
/// commands and wake the thread through an eventfd that sits in the same `zmq_poll` set
/// as the sockets; received messages leave through per-socket `AsyncStream`s.
public final class ZMQIOThread: @unchecked Sendable {
    enum Command {
        case open(SocketOptions, id: Int, continuation: AsyncStream<[[UInt8]]>.Continuation, done: CheckedContinuation<Void, any Error>)
        case send(id: Int, frames: [[UInt8]])
        case close(id: Int)
        case stop
    }

    struct OpenSocket {
        let handle: UnsafeMutableRawPointer
        let continuation: AsyncStream<[[UInt8]]>.Continuation
        var outbox: [[[UInt8]]] = []
        var flood = FloodDetector()
    }

    private let context: UnsafeMutableRawPointer
    private let wakeFD: Int32
    private let commands = Mutex<[Command]>([])
    private let nextID = Atomic<Int>(1)
    private var thread: Thread?
    private let stopped = Atomic<Bool>(false)

    /// How long the thread waits before polling again while a socket floods (see
    /// `FloodDetector`), in microseconds; 0 relays every message the moment it arrives.
    let floodCoalesceMicroseconds: UInt32

    /// The default wait while a socket floods: 2 ms (`GANYMEDE_FLOOD_COALESCE_MS` changes it, 0
    /// turns it off). Measured on a 20,000-line print flood: the gateway's CPU per line halves and
    /// the kernel prints faster (Benchmarks/analysis.md, section 2).
    public static let defaultFloodCoalesceMicroseconds: UInt32 = 2_000

    /// A process-wide instance; the thread starts on first use and lives as long as the process.
    public static let shared: ZMQIOThread = {
        let configured = ProcessInfo.processInfo.environment["GANYMEDE_FLOOD_COALESCE_MS"]
            .flatMap { Double($0) }.map { $0 >= 0 && $0 <= 100 ? UInt32($0 * 1000) : defaultFloodCoalesceMicroseconds }
        let t = ZMQIOThread(floodCoalesceMicroseconds: configured ?? defaultFloodCoalesceMicroseconds)
        t.start()
        return t
    }()

    public init(maxSockets: Int32 = 16_384, floodCoalesceMicroseconds: UInt32 = ZMQIOThread.defaultFloodCoalesceMicroseconds) {
        self.floodCoalesceMicroseconds = floodCoalesceMicroseconds
        context = zmq_ctx_new()
        zmq_ctx_set(context, ZMQ_MAX_SOCKETS, maxSockets)
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
    }

    public func start() {
        let thread = Thread { [self] in self.run() }
        thread.name = "ganymede-zmq"
        thread.stackSize = 1 << 20
        self.thread = thread
        thread.start()
    }

    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }

    /// Opens and connects a socket. Messages it receives arrive on the returned socket's stream.
    public func open(_ options: SocketOptions) async throws -> ZMQSocket {
        let id = nextID.add(1, ordering: .relaxed).oldValue
        let (stream, continuation) = AsyncStream<[[UInt8]]>.makeStream(bufferingPolicy: .unbounded)
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
            enqueue(.open(options, id: id, continuation: continuation, done: done))
        }
        return ZMQSocket(id: id, thread: self, messages: stream)
    }

    func send(id: Int, frames: [[UInt8]]) { enqueue(.send(id: id, frames: frames)) }
    func close(id: Int) { enqueue(.close(id: id)) }

    /// Stops the thread, closing every socket.
    public func shutdown() { enqueue(.stop) }

    private func enqueue(_ command: Command) {
        commands.withLock { $0.append(command) }
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    // MARK: - The I/O thread

    private func run() {
        // Foundation on Linux does not apply a name set before `start()`; set on the running
        // thread, it reaches the OS, and the thread shows up as itself in `top -H`, perf and
        // /proc/<pid>/task/*/comm instead of under the name of the thread that started it.
        Thread.current.name = "ganymede-zmq"
        var sockets: [Int: OpenSocket] = [:]
        var order: [Int] = []
        var running = true
        var flooding = false
        while running {
            if flooding {
                // Let a flood's next messages gather: the next wake-up relays them together.
                usleep(floodCoalesceMicroseconds)
            }
            var items = [zmq_pollitem_t(socket: nil, fd: wakeFD, events: Int16(ZMQ_POLLIN), revents: 0)]
            items.reserveCapacity(order.count + 1)
            for id in order {
                let s = sockets[id]!
                var events = Int16(ZMQ_POLLIN)
                if !s.outbox.isEmpty { events |= Int16(ZMQ_POLLOUT) }
                items.append(zmq_pollitem_t(socket: s.handle, fd: 0, events: events, revents: 0))
            }
            let rc = zmq_poll(&items, Int32(items.count), -1)
            if rc < 0 {
                if zmq_errno() == EINTR { continue }
                // ETERM or a programming error: nothing sensible left to do.
                break
            }
            flooding = false
            let now = floodCoalesceMicroseconds > 0 ? DispatchTime.now().uptimeNanoseconds : 0
            for (index, id) in order.enumerated() {
                let revents = items[index + 1].revents
                guard revents != 0, var s = sockets[id] else { continue }
                if revents & Int16(ZMQ_POLLIN) != 0 {
                    let received = receiveAll(s)
                    if floodCoalesceMicroseconds > 0, received > 0 {
                        if s.flood.record(received, at: now) { flooding = true }
                        sockets[id] = s
                    }
                }
                if revents & Int16(ZMQ_POLLOUT) != 0, !s.outbox.isEmpty {
                    flush(&s)
                    sockets[id] = s
                }
            }
            if items[0].revents & Int16(ZMQ_POLLIN) != 0 {
                var counter: UInt64 = 0
                _ = Glibc.read(wakeFD, &counter, 8)
                let pending = commands.withLock { cmds -> [Command] in
                    let taken = cmds
                    cmds.removeAll(keepingCapacity: true)
                    return taken
                }
                for command in pending {
                    switch command {
                    case .open(let options, let id, let continuation, let done):
                        do {
                            let handle = try makeSocket(options)
                            sockets[id] = OpenSocket(handle: handle, continuation: continuation)
                            order.append(id)
                            done.resume()
                        } catch {
                            continuation.finish()
                            done.resume(throwing: error)
                        }
                    case .send(let id, let frames):
                        guard var s = sockets[id] else { continue }
                        if s.outbox.isEmpty, trySend(s.handle, frames) {
                            continue
                        }
                        s.outbox.append(frames)
                        sockets[id] = s
                    case .close(let id):
                        if let s = sockets.removeValue(forKey: id) {
                            order.removeAll { $0 == id }
                            s.continuation.finish()
                            zmq_close(s.handle)
                        }
                    case .stop:
                        running = false
                    }
                }
            }
        }
        for (_, s) in sockets {
            s.continuation.finish()
            zmq_close(s.handle)
        }
        stopped.store(true, ordering: .releasing)
    }

    private func makeSocket(_ options: SocketOptions) throws -> UnsafeMutableRawPointer {
        guard let handle = zmq_socket(context, options.type.raw) else { throw ZMQError.last("zmq_socket") }
        var linger: Int32 = 0
        zmq_setsockopt(handle, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size)
        // Unlimited receive queues: a flood of output must not be dropped at the
        // subscriber's high-water mark (the gateway drains the socket continuously).
        var hwm: Int32 = 0
        zmq_setsockopt(handle, ZMQ_RCVHWM, &hwm, MemoryLayout<Int32>.size)
        if let identity = options.identity {
            _ = identity.withUnsafeBytes { zmq_setsockopt(handle, ZMQ_ROUTING_ID, $0.baseAddress, $0.count) }
        }
        if options.type == .sub {
            zmq_setsockopt(handle, ZMQ_SUBSCRIBE, nil, 0)
        }
        if zmq_connect(handle, options.endpoint) != 0 {
            let error = ZMQError.last("zmq_connect(\(options.endpoint))")
            zmq_close(handle)
            throw error
        }
        return handle
    }

    /// Receives every message waiting on the socket; returns how many.
    private func receiveAll(_ s: OpenSocket) -> Int {
        var received = 0
        while true {
            var frames: [[UInt8]] = []
            while true {
                var msg = zmq_msg_t()
                zmq_msg_init(&msg)
                let rc = zmq_msg_recv(&msg, s.handle, ZMQ_DONTWAIT)
                if rc < 0 {
                    zmq_msg_close(&msg)
                    // EAGAIN: drained. Parts of a multipart message arrive atomically,
                    // so `frames` is empty here.
                    return received
                }
                let size = zmq_msg_size(&msg)
                if size > 0, let data = zmq_msg_data(&msg) {
                    frames.append(Array(UnsafeRawBufferPointer(start: data, count: size)))
                } else {
                    frames.append([])
                }
                let more = zmq_msg_more(&msg) != 0
                zmq_msg_close(&msg)
                if !more { break }
            }
            s.continuation.yield(frames)
            received += 1
        }
    }

    private func flush(_ s: inout OpenSocket) {
        while let first = s.outbox.first {
            guard trySend(s.handle, first) else { return }
            s.outbox.removeFirst()
        }
    }

    /// Sends a multipart message without blocking; false when the socket would block.
    private func trySend(_ handle: UnsafeMutableRawPointer, _ frames: [[UInt8]]) -> Bool {
        for (i, frame) in frames.enumerated() {
            let flags = (i < frames.count - 1 ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT
            let rc = frame.withUnsafeBytes { zmq_send(handle, $0.baseAddress, $0.count, flags) }
            if rc < 0 {
                // Only the first part can fail with EAGAIN: libzmq queues the rest of a
                // multipart message atomically once its first part is accepted.
                return i > 0
            }
        }
        return true
    }
}

/// How to open a socket.
public struct SocketOptions: Sendable {
    public var type: SocketType
    public var endpoint: String
    public var identity: [UInt8]?

    public init(type: SocketType, endpoint: String, identity: [UInt8]? = nil) {
        self.type = type
        self.endpoint = endpoint
        self.identity = identity
    }
}

/// A socket living on the I/O thread. Sending never blocks the caller.
public final class ZMQSocket: Sendable {
    let id: Int
    let thread: ZMQIOThread
    /// Multipart messages as they arrive; finishes when the socket is closed.
    public let messages: AsyncStream<[[UInt8]]>

    init(id: Int, thread: ZMQIOThread, messages: AsyncStream<[[UInt8]]>) {
        self.id = id
        self.thread = thread
        self.messages = messages
    }

    public func send(_ frames: [[UInt8]]) { thread.send(id: id, frames: frames) }
    public func close() { thread.close(id: id) }
    deinit { thread.close(id: id) }
}
