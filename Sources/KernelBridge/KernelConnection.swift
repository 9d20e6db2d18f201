import Foundation
import Synchronization
import JupyterProtocol
import Logging
import ZeroMQ

/// The one ZeroMQ connection to a kernel, shared by all of its WebSocket clients.
///
/// Routing follows jupyter_server's semantics with one connection instead of one per socket:
/// replies on shell/control and stdin requests go to the session whose request they answer
/// (tracked by `parent_header.msg_id`); iopub goes to every client. All sockets use one
/// ZeroMQ identity so `input_request`s on stdin route back (messaging spec, "Stdin").
public actor KernelConnection {
    public typealias ClientID = Int

    struct Client {
        let session: String
        let continuation: AsyncStream<OutboundMessage>.Continuation
        var replayable = false
        /// Bytes queued for this client and not yet written; nil = not bounded.
        var queue: ClientQueue?
        /// The authenticated user of the WebSocket, when users are named (for revocation).
        var user: String? = nil
    }

    public let kernelID: String
    public private(set) var info: ConnectionInfo
    private(set) var signer: MessageSigner
    let builder: MessageBuilder
    var logger: Logger
    private var sockets: [Channel: ZMQSocket] = [:]
    private var clients: [ClientID: Client] = [:]
    private var nextClientID = 1
    /// `msg_id` of a client request → the session that sent it.
    private var requestOwners: [String: String] = [:]
    private var requestOrder: [String] = []
    private static let maxTrackedRequests = 10_000

    // Readiness (jupyter_server's connect "nudge").
    private var ready = false
    private var nudgeIDs: Set<String> = []
    private var sawIOPub = false
    private var sawNudgeReply = false
    private var readyWaiters: [CheckedContinuation<Bool, Never>] = []

    public private(set) var executionState = "starting"
    public private(set) var lastActivity = Date()
    public private(set) var droppedBadSignatures = 0
    private var receiveTasks: [Task<Void, Never>] = []
    private var closed = false

    /// Client requests that arrive while the kernel is being restarted are held here and sent
    /// once the new kernel is ready: sent at once, they would reach the old kernel as it shuts
    /// down (and never be answered) or sit in a ZeroMQ pipe of uncertain fate.
    private var holding = false
    private var held: [(JupyterMessage, Channel)] = []
    private var heldBytes = 0
    static let maxHeldMessages = 10_000
    static let maxHeldBytes = 64 << 20

    // Heartbeat (messaging spec "Heartbeat for kernels": REQ → REP echo).
    private var heartbeatSocket: ZMQSocket?
    private var heartbeatTasks: [Task<Void, Never>] = []
    private var pingSentAt: ContinuousClock.Instant?
    private var heartbeatGeneration = 0
    /// Consecutive pings the kernel did not echo in time.
    public private(set) var missedHeartbeats = 0
    public private(set) var lastHeartbeat: Date?

    /// Message types whose status does not change the REST `execution_state`
    /// (jupyter_server `untracked_message_types`).
    static let untrackedParents: Set<String> = [
        "comm_info_request", "comm_info_reply", "kernel_info_request", "kernel_info_reply", "shutdown_request",
        "shutdown_reply", "interrupt_request", "interrupt_reply", "debug_request", "debug_reply",
        "stream", "display_data", "update_display_data", "execute_input", "execute_result", "error", "status",
        "clear_output", "debug_event", "input_request", "input_reply",
    ]

    public init(kernelID: String, info: ConnectionInfo, logger: Logger) {
        self.kernelID = kernelID
        self.info = info
        self.signer = MessageSigner(key: info.key, scheme: info.signatureScheme)
        self.builder = MessageBuilder()
        var logger = logger
        logger[metadataKey: "kernel_id"] = "\(kernelID)"
        self.logger = logger
    }

    /// Opens the four sockets and starts draining them.
    public func connect(io: ZMQIOThread = .shared) async throws {
        let identity = Array(builder.session.utf8)
        for channel in Channel.allCases {
            let type: SocketType = channel == .iopub ? .sub : .dealer
            let socket = try await io.open(SocketOptions(type: type, endpoint: info.endpoint(info.port(for: channel)),
                                                         identity: channel == .iopub ? nil : identity))
            sockets[channel] = socket
            let signer = self.signer
            receiveTasks.append(Task { [weak self] in
                for await frames in socket.messages {
                    switch Result(catching: { () throws(ProtocolError) in try WireCodec.decode(frames, signer: signer) }) {
                    case .success(let message): await self?.received(message, on: channel)
                    case .failure(let error): await self?.rejected(channel: channel, error: error)
                    }
                }
            })
        }
    }

    /// Points the connection at a relaunched kernel that listens on other ports or with another
    /// key (remote launchers choose both anew on every launch), keeping clients, routing and
    /// replay buffers. The heartbeat reopens its socket on its next tick.
    public func retarget(_ newInfo: ConnectionInfo, io: ZMQIOThread = .shared) async throws {
        guard newInfo != info, !closed else { return }
        for socket in sockets.values { socket.close() }
        sockets.removeAll()
        for task in receiveTasks { task.cancel() }
        receiveTasks.removeAll()
        heartbeatSocket?.close()
        heartbeatSocket = nil
        pingSentAt = nil
        info = newInfo
        signer = MessageSigner(key: newInfo.key, scheme: newInfo.signatureScheme)
        try await connect(io: io)
    }

    /// Pings the kernel's heartbeat socket every `interval`; a ping not echoed within the
    /// interval counts as missed (logged, and `missedHeartbeats` grows) and the REQ socket is
    /// replaced, since a REQ socket waiting for a lost reply cannot send again.
    public func startHeartbeat(interval: Duration = .seconds(3), io: ZMQIOThread = .shared) {
        guard heartbeatTasks.isEmpty, !closed else { return }
        heartbeatTasks.append(Task { [weak self] in
            while !Task.isCancelled {
                await self?.heartbeatTick(interval: interval, io: io)
                try? await Task.sleep(for: interval)
            }
        })
    }

    private func heartbeatTick(interval: Duration, io: ZMQIOThread) async {
        guard !closed else { return }
        if let sent = pingSentAt, ContinuousClock.now - sent >= interval {
            missedHeartbeats += 1
            pingSentAt = nil
            heartbeatSocket?.close()
            heartbeatSocket = nil
            if missedHeartbeats == 1 || missedHeartbeats % 10 == 0 {
                logger.warning("kernel missed heartbeats", metadata: ["missed": "\(missedHeartbeats)"])
            }
        }
        if heartbeatSocket == nil {
            guard let socket = try? await io.open(SocketOptions(type: .req, endpoint: info.endpoint(info.hbPort))) else { return }
            guard !closed else { socket.close(); return }
            heartbeatSocket = socket
            heartbeatGeneration += 1
            let generation = heartbeatGeneration
            heartbeatTasks.append(Task { [weak self] in
                for await _ in socket.messages { await self?.pong(generation: generation) }
            })
        }
        if pingSentAt == nil {
            pingSentAt = ContinuousClock.now
            heartbeatSocket?.send([Array("ping".utf8)])
        }
    }

    private func pong(generation: Int) {
        // A late echo from a socket given up on says nothing about the current ping.
        guard generation == heartbeatGeneration else { return }
        pingSentAt = nil
        missedHeartbeats = 0
        lastHeartbeat = Date()
    }

    /// Closes the sockets and ends every client's stream.
    public func close() {
        guard !closed else { return }
        closed = true
        heartbeatSocket?.close()
        heartbeatSocket = nil
        for task in heartbeatTasks { task.cancel() }
        heartbeatTasks.removeAll()
        for socket in sockets.values { socket.close() }
        sockets.removeAll()
        for client in clients.values { client.continuation.finish() }
        clients.removeAll()
        for task in receiveTasks { task.cancel() }
        receiveTasks.removeAll()
        for waiter in readyWaiters { waiter.resume(returning: false) }
        readyWaiters.removeAll()
    }

    // MARK: Clients

    public var connectionCount: Int { clients.count }

    /// Adds a WebSocket client. Its messages arrive on the returned stream.
    /// Adds a WebSocket client. Its messages arrive on the returned stream. A client that
    /// names a `session_id` (`replayable`) first receives what was kept for that session
    /// while it had no open WebSocket, in order.
    public func addClient(session: String, replayable: Bool = false) -> (ClientID, AsyncStream<OutboundMessage>) {
        addClient(session: session, replayable: replayable, queue: nil)
    }

    private func addClient(session: String, replayable: Bool, queue: ClientQueue?, user: String? = nil) -> (ClientID, AsyncStream<OutboundMessage>) {
        let id = nextClientID
        nextClientID += 1
        let (stream, continuation) = AsyncStream<OutboundMessage>.makeStream(bufferingPolicy: .unbounded)
        if closed {
            continuation.finish()
            return (id, stream)
        }
        if let buffer = offline.removeValue(forKey: session) {
            if buffer.dropped > 0 {
                let note = "[ganymede] \(buffer.dropped) kernel message(s) were dropped while this session was disconnected "
                    + "(replay buffer limit: \(replayLimits.messages) messages / \(replayLimits.bytes) bytes)\n"
                var content: [UInt8] = Array(#"{"name":"stderr","text":"#.utf8)
                JSONScanner.appendQuoted(note, to: &content)
                content.append(UInt8(ascii: "}"))
                let notice = OutboundMessage(channel: .iopub, message: builder.message(type: "stream", content: content))
                queue?.force(notice)
                continuation.yield(notice)
            }
            // The replay goes out whatever its size: it was already bounded by the replay limits.
            for message in buffer.messages {
                queue?.force(message)
                continuation.yield(message)
            }
            logger.debug("replayed offline messages", metadata: ["session_id": "\(session)", "count": "\(buffer.count)"])
        }
        clients[id] = Client(session: session, continuation: continuation, replayable: replayable, queue: queue, user: user)
        return (id, stream)
    }

    /// Like `addClient(session:replayable:)`, with the client's unsent output bounded by
    /// `queueLimit` bytes. The consumer reports what it has written through the returned
    /// `ClientQueue`. A client that falls further behind (it stopped reading, or reads slower
    /// than the kernel writes) is disconnected rather than let the gateway's memory grow: what
    /// was queued is still written, its stream then ends, and from the message that did not fit
    /// on everything for its session is kept for replay when it names its session.
    public func addClient(session: String, replayable: Bool, queueLimit: Int,
                          user: String? = nil) -> (ClientID, AsyncStream<OutboundMessage>, ClientQueue) {
        let queue = ClientQueue(limit: queueLimit, session: session)
        let (id, stream) = addClient(session: session, replayable: replayable, queue: queue, user: user)
        return (id, stream, queue)
    }

    /// Cuts every client of `user` at once (access revoked): their writers stop without writing
    /// what is queued, their relays close the sockets, and nothing is kept for replay (the
    /// sessions are not reopened, so what they never wrote is dropped with them). Returns how
    /// many clients were cut.
    public func disconnect(user: String) -> Int {
        let cut = clients.filter { $0.value.user == user }
        for (id, client) in cut {
            client.queue?.stop()
            clients.removeValue(forKey: id)
            client.continuation.finish()
            detached.removeValue(forKey: client.session)
        }
        // What was kept for the user's away sessions must not reach them if access comes back.
        offline = offline.filter { $0.value.user != user }
        return cut.count
    }

    /// Hands a message to one client, enforcing its queue bound.
    private func deliver(_ outbound: OutboundMessage, to id: ClientID) {
        guard let client = clients[id] else { return }
        if let queue = client.queue {
            guard queue.reserve(outbound) else {
                overflowed(id, client, first: outbound)
                return
            }
        }
        client.continuation.yield(outbound)
    }

    private func overflowed(_ id: ClientID, _ client: Client, first: OutboundMessage) {
        clients.removeValue(forKey: id)
        client.continuation.finish()
        slowClientsDisconnected += 1
        let keep = client.replayable && !closed && !clients.values.contains { $0.session == client.session }
        logger.warning("client fell too far behind: disconnected", metadata: [
            "session_id": "\(client.session)", "queued_bytes": "\(client.queue?.queued ?? 0)",
            "kept_for_replay": "\(keep)",
        ])
        if keep {
            openReplayBuffer(for: client.session, user: client.user)
            keepOffline(first, for: client.session)
            // Its writer goes on writing what was queued; a reconnect of the session must not
            // take the replay before what that writer never wrote has gone back to its front.
            if let queue = client.queue { detached[client.session, default: []].append(queue) }
        }
    }

    /// Queues of clients removed while their writer may still run (cut for falling behind), by
    /// session, until their relay hands back what they never wrote (`removeClient(_:unwritten:)`).
    private var detached: [String: [ClientQueue]] = [:]

    /// Clients disconnected because their output queue overflowed (for metrics).
    public private(set) var slowClientsDisconnected = 0

    /// Ends a client's stream without removing it: its writer, told to stop, wakes and ends,
    /// while what the kernel sends meanwhile still lands in the client's queue (unwritten), to
    /// be handed back by `removeClient(_:unwritten:)`.
    public func finishStream(_ id: ClientID) {
        clients[id]?.continuation.finish()
    }

    /// Removes a client. With `unwritten`, the queue of a client whose writer has stopped, what
    /// it was given and never wrote goes to the front of its session's replay buffer, before
    /// anything kept from now on, so the next WebSocket of the session gets every message once
    /// and in order. (Done in the same step as the removal: a reconnect cannot slip in between.)
    public func removeClient(_ id: ClientID, unwritten queue: ClientQueue? = nil) {
        if let client = clients.removeValue(forKey: id) {
            client.continuation.finish()
            // The session's last WebSocket is gone: keep its messages until it comes back.
            if client.replayable, !closed, !clients.values.contains(where: { $0.session == client.session }) {
                openReplayBuffer(for: client.session, user: client.user)
            }
        }
        // (A client cut for falling behind, or replaced by a newer socket, was removed already;
        // its replay buffer exists.)
        guard let queue else { return }
        requeue(queue)
        if var waiting = detached[queue.session] {
            waiting.removeAll { $0 === queue }
            detached[queue.session] = waiting.isEmpty ? nil : waiting
        }
    }

    /// Puts what a stopped client was given and never wrote at the front of its session's
    /// replay buffer. Without one (the client named no session, or another WebSocket of the
    /// session is open and got them live) there is nobody to keep them for.
    private func requeue(_ queue: ClientQueue) {
        let unwritten = queue.takeUnwritten()
        guard !unwritten.isEmpty, offline[queue.session] != nil else { return }
        replayDroppedTotal += offline[queue.session]!.prepend(unwritten, maxMessages: replayLimits.messages, maxBytes: replayLimits.bytes)
        logger.debug("kept unwritten messages of a closed client for replay",
                     metadata: ["session_id": "\(queue.session)", "count": "\(unwritten.count)"])
    }

    /// jupyter_server's "Replacing stale connection" (`kernels/websocket.py`): a WebSocket that
    /// names a session another open WebSocket has (or one cut for falling behind whose writer
    /// may still run) takes it over. The old one stops writing and is removed; once its writer
    /// has returned, what it never wrote goes to the front of the session's replay buffer, which
    /// the new one then receives: a client that reconnects before the gateway has seen its old
    /// socket close loses nothing and gets nothing twice.
    public func replaceStale(session: String) async {
        var stale: [ClientQueue] = []
        var user: String?
        for (id, client) in clients where client.session == session && client.replayable {
            user = client.user
            client.queue?.stop()
            clients.removeValue(forKey: id)
            client.continuation.finish()
            if let queue = client.queue { stale.append(queue) }
        }
        for queue in detached.removeValue(forKey: session) ?? [] {
            queue.stop()
            stale.append(queue)
        }
        guard !stale.isEmpty else { return }
        if !closed { openReplayBuffer(for: session, user: user ?? offline[session]?.user) }
        logger.debug("replacing stale connection", metadata: ["session_id": "\(session)"])
        for queue in stale {
            if await !queue.waitForWriter(timeout: .seconds(5)) {
                logger.warning("stale connection's writer did not stop within 5 s", metadata: ["session_id": "\(session)"])
            }
            requeue(queue)
        }
    }

    // MARK: Replay while disconnected

    /// Messages kept for one session while none of its WebSockets is open, bounded by count
    /// and bytes; overflow drops the oldest and the client is told how many on reconnect.
    struct ReplayBuffer {
        let since: ContinuousClock.Instant
        /// Whose session it is (named users only), so a revocation can drop it.
        let user: String?
        /// Live messages are `storage[head...]`: dropping the oldest moves `head` instead of
        /// shifting the array, and the dead prefix is compacted once it is half the storage.
        private var storage: [OutboundMessage] = []
        private var head = 0
        var bytes = 0
        var dropped = 0

        init(since: ContinuousClock.Instant, user: String? = nil) {
            self.since = since
            self.user = user
        }

        var messages: ArraySlice<OutboundMessage> { storage[head...] }
        var count: Int { storage.count - head }

        /// Puts older messages before the kept ones, then drops the oldest beyond the bounds;
        /// returns how many were dropped.
        mutating func prepend(_ older: [OutboundMessage], maxMessages: Int, maxBytes: Int) -> Int {
            storage = older + storage[head...]
            head = 0
            bytes += older.reduce(0) { $0 + $1.size }
            return trim(maxMessages: maxMessages, maxBytes: maxBytes)
        }

        /// Appends, then drops the oldest beyond the bounds; returns how many were dropped.
        mutating func append(_ message: OutboundMessage, maxMessages: Int, maxBytes: Int) -> Int {
            storage.append(message)
            bytes += message.size
            return trim(maxMessages: maxMessages, maxBytes: maxBytes)
        }

        private mutating func trim(maxMessages: Int, maxBytes: Int) -> Int {
            var n = 0
            while count > maxMessages || (bytes > maxBytes && count > 1) {
                bytes -= storage[head].size
                head += 1
                n += 1
            }
            if head > 64 && head * 2 > storage.count {
                storage.removeFirst(head)
                head = 0
            }
            dropped += n
            return n
        }
    }

    private var offline: [String: ReplayBuffer] = [:]
    /// Per-session bounds of the replay buffer.
    public var replayLimits = (messages: 10_000, bytes: 16 << 20)
    /// How long a disconnected session's messages are kept.
    public var replayTTL: Duration = .seconds(600)
    static let maxOfflineSessions = 32
    /// Messages dropped from replay buffers since the kernel started (for metrics).
    public private(set) var replayDroppedTotal = 0

    /// What the replay buffers hold right now, over all disconnected sessions.
    public var replayBuffered: (sessions: Int, messages: Int, bytes: Int) {
        offline.values.reduce((offline.count, 0, 0)) { ($0.0, $0.1 + $1.count, $0.2 + $1.bytes) }
    }

    public func setReplayLimits(messages: Int, bytes: Int, ttl: Duration) {
        replayLimits = (messages, bytes)
        replayTTL = ttl
    }

    /// Starts keeping a session's messages (if not already), within `maxOfflineSessions`: the
    /// session away longest is dropped beyond it.
    private func openReplayBuffer(for session: String, user: String?) {
        guard offline[session] == nil else { return }
        offline[session] = ReplayBuffer(since: ContinuousClock.now, user: user)
        if offline.count > Self.maxOfflineSessions, let oldest = offline.min(by: { $0.value.since < $1.value.since })?.key {
            offline.removeValue(forKey: oldest)
        }
    }

    private func keepOffline(_ message: OutboundMessage, for session: String) {
        // Mutated in place through the dictionary: copying the buffer out and back would copy
        // every kept message on every message (the benchmark found 5x the CPU per execute).
        guard offline[session] != nil else { return }
        replayDroppedTotal += offline[session]!.append(message, maxMessages: replayLimits.messages, maxBytes: replayLimits.bytes)
    }

    public static func byteCount(_ m: JupyterMessage) -> Int {
        m.header.count + m.parentHeader.count + m.metadata.count + m.content.count + m.buffers.reduce(0) { $0 + $1.count }
    }

    /// When `expireOffline` last looked: it runs for every iopub message, and rebuilding the
    /// dictionary each time cost an allocation per message per kernel; TTLs are minutes, so
    /// looking once a second is exact enough.
    private var lastExpiry = ContinuousClock.now

    private func expireOffline() {
        guard !offline.isEmpty else { return }
        let now = ContinuousClock.now
        guard now - lastExpiry >= .seconds(1) else { return }
        lastExpiry = now
        guard offline.values.contains(where: { now - $0.since >= replayTTL }) else { return }
        offline = offline.filter { now - $0.value.since < replayTTL }
    }

    /// Sends a client's message to the kernel, signed with the kernel's key.
    public func send(_ message: JupyterMessage, on channel: Channel, from client: ClientID) {
        guard let socket = sockets[channel], let owner = clients[client] else { return }
        if channel != .iopub && channel != .stdin {
            track(message.msgID, session: owner.session)
        }
        lastActivity = Date()
        if holding {
            let size = Self.byteCount(message)
            guard held.count < Self.maxHeldMessages, heldBytes + size <= Self.maxHeldBytes else {
                logger.error("dropped a client request held during restart: hold buffer full",
                             metadata: ["msg_type": "\(message.msgType)", "held": "\(held.count)"])
                return
            }
            held.append((message, channel))
            heldBytes += size
            return
        }
        socket.send(WireCodec.encode(message, signer: signer))
    }

    /// From now on, client requests wait in the gateway (kernel restarting).
    public func holdRequests() {
        holding = true
    }

    /// Sends the held requests, in arrival order, to the (new) kernel.
    public func releaseRequests() {
        holding = false
        let pending = held
        held.removeAll()
        heldBytes = 0
        for (message, channel) in pending {
            sockets[channel]?.send(WireCodec.encode(message, signer: signer))
        }
    }

    /// The kernel will not come back: held requests are dropped. Clients learn it from the
    /// `status: dead` the caller broadcasts. Returns how many were dropped.
    @discardableResult
    public func discardHeldRequests() -> Int {
        holding = false
        let n = held.count
        if n > 0 { logger.warning("kernel did not come back: dropping held client requests", metadata: ["count": "\(n)"]) }
        held.removeAll()
        heldBytes = 0
        return n
    }

    /// Pushes a message the gateway made (e.g. `status: restarting`) to every client, and keeps
    /// it for the sessions that are away.
    public func broadcast(_ message: JupyterMessage, on channel: Channel = .iopub) {
        let outbound = OutboundMessage(channel: channel, message: message)
        // Like the kernel's own iopub: a session that is away gets it on its return, so a client
        // that was disconnected while its kernel died still learns of the restart.
        let offlineSessions = Array(offline.keys)
        for id in Array(clients.keys) { deliver(outbound, to: id) }
        for session in offlineSessions { keepOffline(outbound, for: session) }
    }

    /// A status message signed as the kernel would sign it, for clients that verify.
    public func statusMessage(_ state: String, reason: String? = nil) -> JupyterMessage {
        builder.status(state, reason: reason)
    }

    /// Sends a request of the gateway's own (shutdown, interrupt) on a channel.
    public func sendOwn(type: String, content: [UInt8], on channel: Channel) -> String {
        let message = builder.message(type: type, content: content)
        sockets[channel]?.send(WireCodec.encode(message, signer: signer))
        return message.msgID
    }

    private func track(_ msgID: String, session: String) {
        if requestOwners.updateValue(session, forKey: msgID) == nil {
            requestOrder.append(msgID)
            // Answered requests leave `requestOwners` at once but stay in `requestOrder` until it
            // is compacted here, once at least half of it is answered (amortised O(1)); without
            // this, every request ever made kept its id until the 10,000th.
            if requestOrder.count > 64 && requestOrder.count > 2 * requestOwners.count {
                requestOrder.removeAll { requestOwners[$0] == nil }
            }
            if requestOrder.count > Self.maxTrackedRequests {
                let dropped = requestOrder.removeFirst()
                requestOwners.removeValue(forKey: dropped)
            }
        }
    }

    // MARK: Kernel → clients

    private func rejected(channel: Channel, error: ProtocolError) {
        if error == .badSignature { droppedBadSignatures += 1 }
        logger.warning("dropped message from kernel", metadata: ["channel": "\(channel)", "error": "\(error)"])
    }

    private func received(_ message: JupyterMessage, on channel: Channel) {
        if channel == .iopub {
            lastActivity = Date()
            if !sawIOPub {
                sawIOPub = true
                checkReady()
            }
            if message.msgType == "status", let state = Self.executionState(of: message) {
                if state == "starting" {
                    executionState = "idle"
                } else if let parentType = message.parentMsgType, !Self.untrackedParents.contains(parentType) {
                    executionState = state
                } else if message.parentMsgType == nil {
                    executionState = state
                }
            }
            let outbound = OutboundMessage(channel: .iopub, message: message)
            expireOffline()
            // Sessions already offline keep it here; a client cut while delivering it keeps it
            // in `overflowed`, so each session gets it exactly once.
            let offlineSessions = Array(offline.keys)
            for id in Array(clients.keys) { deliver(outbound, to: id) }
            for session in offlineSessions { keepOffline(outbound, for: session) }
            return
        }
        guard let parent = message.parentMsgID else {
            logger.debug("dropped parentless message", metadata: ["channel": "\(channel)", "msg_type": "\(message.msgType)"])
            return
        }
        if nudgeIDs.contains(parent) {
            if message.msgType == "kernel_info_reply" {
                nudgeIDs.remove(parent)
                sawNudgeReply = true
                checkReady()
            }
            return
        }
        guard let session = requestOwners[parent] else {
            // An input_request nobody receives leaves the kernel waiting for ever: worth a warning.
            let level: Logger.Level = channel == .stdin ? .warning : .debug
            logger.log(level: level, "dropped reply with no requester",
                       metadata: ["channel": "\(channel)", "msg_type": "\(message.msgType)", "parent_msg_id": "\(parent)"])
            return
        }
        if channel != .stdin, message.msgType.hasSuffix("_reply") {
            requestOwners.removeValue(forKey: parent)
        }
        let outbound = OutboundMessage(channel: channel, message: message)
        var delivered = false
        for (id, client) in clients where client.session == session {
            deliver(outbound, to: id)
            delivered = true
        }
        if !delivered {
            if offline[session] != nil {
                keepOffline(outbound, for: session)
            } else {
                logger.debug("requester gone; reply not delivered", metadata: ["msg_type": "\(message.msgType)"])
            }
        }
    }

    static func executionState(of message: JupyterMessage) -> String? {
        guard let members = try? JSONScanner.topLevelMembers(of: message.content) else { return nil }
        for member in members where member.key == "execution_state" {
            return try? JSONScanner.decodeString(message.content, member.value)
        }
        return nil
    }

    // MARK: Readiness

    public var isReady: Bool { ready }

    /// Forgets readiness (after a restart), so the next wait nudges the new process.
    public func resetReadiness() {
        ready = false
        sawIOPub = false
        sawNudgeReply = false
        nudgeIDs.removeAll()
        executionState = "starting"
    }

    /// Waits until the kernel answers `kernel_info_request` and iopub delivers, sending
    /// the request on shell and control meanwhile (jupyter_server `connection/channels.py`
    /// nudge: works around ZeroMQ's slow-joiner problem). jupyter_server nudges every 0.5 s.
    /// Here, once a `kernel_info_reply` has come back and only iopub is missing, every 0.1 s:
    /// the kernel is up and just the late-joining SUB missed its status, so a kernel that has just
    /// bound its ports (remote launchers report them before the kernel binds) is seen ready within
    /// 0.1 s instead of 0.5 s. Until the first reply, requests queue in the DEALER, so re-sending
    /// faster would only pile them up. Returns false on timeout or when the connection closes.
    public func waitUntilReady(timeout: Duration) async -> Bool {
        if ready { return true }
        if closed { return false }
        let nudger = Task { [weak self] in
            while !Task.isCancelled {
                guard let self, await self.nudge() else { return }
                try? await Task.sleep(for: .milliseconds(await self.sawNudgeReply ? 100 : 500))
            }
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { await self?.readyTimedOut() }
        }
        defer {
            nudger.cancel()
            timer.cancel()
        }
        return await withCheckedContinuation { readyWaiters.append($0) }
    }

    /// Sends one round of nudges; false once ready.
    private func nudge() -> Bool {
        guard !ready, !closed else { return false }
        for channel in [Channel.shell, .control] {
            let message = builder.message(type: "kernel_info_request")
            nudgeIDs.insert(message.msgID)
            sockets[channel]?.send(WireCodec.encode(message, signer: signer))
        }
        return true
    }

    private func checkReady() {
        guard !ready, sawIOPub, sawNudgeReply else { return }
        ready = true
        if executionState == "starting" { executionState = "idle" }
        for waiter in readyWaiters { waiter.resume(returning: true) }
        readyWaiters.removeAll()
    }

    private func readyTimedOut() {
        for waiter in readyWaiters { waiter.resume(returning: ready) }
        readyWaiters.removeAll()
    }
}

/// The messages handed to one WebSocket client and not yet written: queued by the kernel
/// connection, acknowledged by the writer once each frame is written. It bounds what a slow
/// client may hold, and when the client closes it is what goes back to the session's replay
/// buffer (handed to the stream, never written), so a close loses nothing.
public final class ClientQueue: Sendable {
    public let limit: Int
    /// The client's session (where its unwritten messages go back to).
    let session: String

    struct State {
        /// Bytes queued and not yet written, and how many of the oldest of them were a forced
        /// replay. The bound applies to the rest: a client that reconnects to a replay larger
        /// than the bound while its kernel keeps printing is not cut for the replay, only if it
        /// then falls `limit` behind the live output (the writer writes in order, so the first
        /// bytes written are the replay's).
        var bytes = 0
        var forced = 0
        /// The unwritten messages, oldest first (`pending[head...]`).
        var pending: [OutboundMessage] = []
        var head = 0
        /// Set when the client closed: the writer writes nothing more.
        var stopped = false
    }

    private let state = Mutex(State())
    private let writer = Mutex<(ended: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    init(limit: Int, session: String = "") {
        self.limit = limit
        self.session = session
    }

    public var queued: Int { state.withLock { $0.bytes } }

    /// False when the message would take the queue's live part past its limit (a message larger
    /// than the limit still goes through an empty queue, so one big output never disconnects).
    func reserve(_ message: OutboundMessage) -> Bool {
        state.withLock { s in
            let live = s.bytes - s.forced
            if live > 0 && live + message.size > limit { return false }
            s.bytes += message.size
            s.pending.append(message)
            return true
        }
    }

    /// Queues a message that must go out regardless (a replay).
    func force(_ message: OutboundMessage) {
        state.withLock { s in
            s.bytes += message.size
            s.forced += message.size
            s.pending.append(message)
        }
    }

    /// Called by the writer before each frame: false once the client has closed, so the rest
    /// stays unwritten (and goes back to the replay buffer) instead of racing the close.
    public func shouldWrite() -> Bool { state.withLock { !$0.stopped } }

    /// The writer wrote the oldest queued message.
    public func written() {
        state.withLock { s in
            guard s.head < s.pending.count else { return }
            let size = s.pending[s.head].size
            s.head += 1
            s.bytes -= size
            s.forced = max(0, s.forced - size)
            if s.head == s.pending.count {
                // Drained (the usual case for a client that keeps up): let go of the written
                // messages now. Keeping them until a compaction held up to 256 messages, and
                // an array grown to a burst's size, for every idle client.
                s.pending.removeAll(keepingCapacity: s.pending.capacity <= 64)
                s.head = 0
            } else if s.head > 256 && s.head * 2 > s.pending.count {
                s.pending.removeFirst(s.head)
                s.head = 0
            }
        }
    }

    /// The client closed: stop writing.
    public func stop() { state.withLock { $0.stopped = true } }

    /// The writer has returned: nothing of this queue is being written any more.
    public func writerEnded() {
        let waiters = writer.withLock { w -> [CheckedContinuation<Void, Never>] in
            w.ended = true
            defer { w.waiters = [] }
            return w.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until the writer has returned, at most `timeout`; false when it had not.
    func waitForWriter(timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let done = self.writer.withLock { w -> Bool in
                        if w.ended { return true }
                        w.waiters.append(c)
                        return false
                    }
                    if done { c.resume() }
                }
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            if !first { self.writerEnded() }  // releases the waiting child; the writer is left to its fate
            group.cancelAll()
            return first
        }
    }

    /// What was queued and never written, oldest first (after the writer has stopped).
    func takeUnwritten() -> [OutboundMessage] {
        state.withLock { s in
            let rest = Array(s.pending[s.head...])
            s.pending = []
            s.head = 0
            s.bytes = 0
            s.forced = 0
            return rest
        }
    }
}
