import AsyncHTTPClient
import Foundation
import GatewayServer
import Hummingbird
import JupyterProtocol
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Testing
import WSClient

/// A real gateway in this process on a free port, serving real ipykernel kernels.
struct TestGateway {
    let port: Int
    let gateway: Gateway
    var base: String { "http://127.0.0.1:\(port)" }

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Runs `body` against a fresh gateway, then stops every kernel and the server.
    static func with(
        configure: (inout GatewayConfiguration) -> Void = { _ in },
        pathPrefix: String? = nil,
        _ body: (TestGateway) async throws -> Void
    ) async throws {
        var c = GatewayConfiguration()
        c.port = 0
        c.kernelSpecDirectories = [repositoryRoot.appendingPathComponent("kernelspecs").path]
        c.wsPingInterval = .zero
        c.shutdownWaitTime = .seconds(2)
        // Tests run as root in CI; EG's default refuses root (KernelAuthorizationTests check that).
        c.unauthorizedUsers = []
        configure(&c)
        var env = ProcessInfo.processInfo.environment
        let venv = repositoryRoot.appendingPathComponent(".venv/bin").path
        if FileManager.default.fileExists(atPath: venv) { env["PATH"] = venv + ":" + (env["PATH"] ?? "/usr/bin:/bin") }
        env["GANYMEDE_TEST_SECRET"] = "visible-to-kernels"
        if let pathPrefix { env["PATH"] = pathPrefix + ":" + (env["PATH"] ?? "/usr/bin:/bin") }
        var logger = Logger(label: "test-gateway")
        logger.logLevel = .warning
        let gateway = Gateway(configuration: c, logger: logger, environment: env)
        let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
        let services = gateway.makeServices { port in portContinuation.yield(port) }
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = portStream.makeAsyncIterator()
            guard let port = await iterator.next() else { throw TestFailure("server did not start") }
            let test = TestGateway(port: port, gateway: gateway)
            var failure: (any Error)?
            do {
                try await body(test)
            } catch {
                failure = error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            #expect(await gateway.registry.count == 0, "kernels left after shutdown")
            if let failure { throw failure }
        }
    }

    // MARK: HTTP

    struct HTTPResult {
        let status: Int
        let headers: HTTPHeaders
        let body: [UInt8]
        var json: Any? { try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]) }
        var object: [String: Any] { (json as? [String: Any]) ?? [:] }
    }

    func request(_ method: HTTPMethod, _ path: String, body: String? = nil, bytes: [UInt8]? = nil,
                 headers: [(String, String)] = []) async throws -> HTTPResult {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        if let bytes { request.body = .bytes(ByteBuffer(bytes: bytes)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(90))
        let buffer = try await response.body.collect(upTo: 16 << 20)
        return HTTPResult(status: Int(response.status.code), headers: response.headers, body: Array(buffer.readableBytesView))
    }

    func startKernel(env: [String: String]? = nil) async throws -> String {
        var body: [String: Any] = ["name": "python3"]
        if let env { body["env"] = env }
        let data = try JSONSerialization.data(withJSONObject: body)
        let r = try await request(.POST, "/api/kernels", body: String(decoding: data, as: UTF8.self))
        guard r.status == 201, let id = r.object["id"] as? String else {
            throw TestFailure("kernel start failed: \(r.status) \(String(decoding: r.body, as: UTF8.self))")
        }
        return id
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A WebSocket client speaking one of the kernel protocols, decoding with the codecs
/// under test (legacy text, legacy binary and v1 frames are all accepted inbound).
final class ChannelsClient: @unchecked Sendable {
    let proto: WebSocketProtocol
    let builder: MessageBuilder
    private let mailbox = Mailbox()
    private let outgoing = AsyncStream<WebSocketPayload>.makeStream()
    private var task: Task<Void, any Error>?
    /// Every raw frame seen, to check framing.
    private(set) var frames: [WebSocketPayload] = []

    init(proto: WebSocketProtocol, session: String = UUID().uuidString) {
        self.proto = proto
        self.builder = MessageBuilder(session: session, username: "tester")
    }

    func connect(_ gw: TestGateway, kernel: String, session: String? = nil, query: String = "") async throws {
        var headers = HTTPFields()
        if proto == .v1 { headers[.secWebSocketProtocol] = "v1.kernel.websocket.jupyter.org" }
        let url = "ws://127.0.0.1:\(gw.port)/api/kernels/\(kernel)/channels?session_id=\(session ?? builder.session)\(query)"
        let inbound = mailbox
        let outgoing = self.outgoing.stream
        let (opened, openedContinuation) = AsyncStream<Void>.makeStream()
        task = Task {
            try await WebSocketClient.connect(
                url: url, configuration: .init(maxFrameSize: 64 << 20, additionalHeaders: headers), logger: Logger(label: "ws-test")
            ) { inboundStream, outbound, _ in
                openedContinuation.yield()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await payload in outgoing {
                            switch payload {
                            case .text(let b): try await outbound.write(.text(String(decoding: b, as: UTF8.self)))
                            case .binary(let b): try await outbound.write(.binary(ByteBuffer(bytes: b)))
                            }
                        }
                    }
                    group.addTask {
                        for try await message in inboundStream.messages(maxSize: 64 << 20) {
                            switch message {
                            case .text(let s): await inbound.put(.text(Array(s.utf8)))
                            case .binary(let b): await inbound.put(.binary(Array(b.readableBytesView)))
                            }
                        }
                        await inbound.finish()
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
            openedContinuation.finish()
            await inbound.finish()
        }
        var it = opened.makeAsyncIterator()
        guard await it.next() != nil else { throw TestFailure("websocket did not open") }
    }

    func sendRaw(_ payload: WebSocketPayload) { outgoing.continuation.yield(payload) }

    @discardableResult
    func send(_ type: String, content: String, channel: JupyterProtocol.Channel = .shell, buffers: [[UInt8]] = []) -> String {
        var message = builder.message(type: type, content: Array(content.utf8))
        message.buffers = buffers
        outgoing.continuation.yield(WebSocketCodec.encode(message, channel: channel, protocol: proto))
        return message.msgID
    }

    func execute(_ code: String, allowStdin: Bool = false) -> String {
        let c = try! JSONSerialization.data(withJSONObject: ["code": code, "silent": false, "store_history": true,
                                                            "user_expressions": [:], "allow_stdin": allowStdin, "stop_on_error": true])
        return send("execute_request", content: String(decoding: c, as: UTF8.self))
    }

    /// The next message, decoded; nil on timeout or close.
    func next(timeout: Duration = .seconds(30)) async -> (JupyterProtocol.Channel, JupyterMessage)? {
        guard let payload = await mailbox.take(timeout: timeout) else { return nil }
        frames.append(payload)
        return Self.decode(payload, proto: proto)
    }

    static func decode(_ payload: WebSocketPayload, proto: WebSocketProtocol) -> (JupyterProtocol.Channel, JupyterMessage)? {
        switch (proto, payload) {
        case (.v1, .binary(let b)): return try? WebSocketCodec.decodeV1(b)
        case (.legacy, .text(let b)): return try? WebSocketCodec.decodeLegacyJSON(b, buffers: [])
        case (.legacy, .binary(let b)):
            guard let parts = try? WebSocketCodec.splitLegacyBinary(b) else { return nil }
            return try? WebSocketCodec.decodeLegacyJSON(parts[0], buffers: Array(parts[1...]))
        default: return nil
        }
    }

    /// Messages until iopub `idle` for `parent` and (when `reply`) the shell reply to it, in
    /// arrival order. The reply and the iopub messages travel on different sockets, so either
    /// may come last.
    func collect(until parent: String, reply: Bool = true, timeout: Duration = .seconds(60)) async -> [(JupyterProtocol.Channel, JupyterMessage)] {
        var out: [(JupyterProtocol.Channel, JupyterMessage)] = []
        var idle = false
        var replied = !reply
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, let m = await next(timeout: deadline - ContinuousClock.now) {
            out.append(m)
            if m.0 == .iopub, m.1.msgType == "status", m.1.parentMsgID == parent,
               ChannelsClient.string(m.1.content, "execution_state") == "idle" { idle = true }
            if m.0 == .shell, m.1.parentMsgID == parent { replied = true }
            if idle && replied { break }
        }
        return out
    }

    var isClosed: Bool { get async { await mailbox.isClosed } }

    func close() {
        outgoing.continuation.finish()
        task?.cancel()
    }

    static func object(_ bytes: [UInt8]) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
    }

    static func string(_ bytes: [UInt8], _ key: String) -> String? { object(bytes)[key] as? String }

    /// The text/plain result or stdout of an execution.
    static func output(_ messages: [(JupyterProtocol.Channel, JupyterMessage)]) -> String {
        var out = ""
        for (channel, m) in messages where channel == .iopub {
            let c = object(m.content)
            if m.msgType == "stream" { out += c["text"] as? String ?? "" }
            if m.msgType == "execute_result" { out += ((c["data"] as? [String: Any])?["text/plain"] as? String) ?? "" }
            if m.msgType == "error" { out += "\(c["ename"] ?? ""): \(c["evalue"] ?? "")" }
        }
        return out
    }
}

/// Received frames, taken one at a time with a timeout.
actor Mailbox {
    private var items: [WebSocketPayload] = []
    private var closed = false
    private var waiter: (id: UUID, continuation: CheckedContinuation<WebSocketPayload?, Never>)?

    var isClosed: Bool { closed && items.isEmpty }

    func put(_ payload: WebSocketPayload) {
        if let w = waiter {
            waiter = nil
            w.continuation.resume(returning: payload)
        } else {
            items.append(payload)
        }
    }

    func finish() {
        closed = true
        if let w = waiter {
            waiter = nil
            w.continuation.resume(returning: nil)
        }
    }

    func take(timeout: Duration) async -> WebSocketPayload? {
        if !items.isEmpty { return items.removeFirst() }
        if closed { return nil }
        let id = UUID()
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.expire(id)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { waiter = (id, $0) }
    }

    private func expire(_ id: UUID) {
        if let w = waiter, w.id == id {
            waiter = nil
            w.continuation.resume(returning: nil)
        }
    }
}

extension ChannelsClient {
    /// Reads messages until one satisfies `match`; returns it, or nil on timeout or close.
    func waitFor(timeout: Duration = .seconds(60),
                 _ match: (JupyterProtocol.Channel, JupyterMessage) -> Bool) async -> JupyterMessage? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, let m = await next(timeout: deadline - ContinuousClock.now) {
            if match(m.0, m.1) { return m.1 }
        }
        return nil
    }

    /// The next iopub `status` whose execution_state is one of `states`.
    func waitForStatus(_ states: Set<String>, timeout: Duration = .seconds(60)) async -> JupyterMessage? {
        await waitFor(timeout: timeout) { channel, m in
            channel == .iopub && m.msgType == "status"
                && states.contains(ChannelsClient.string(m.content, "execution_state") ?? "")
        }
    }
}

extension TestGateway {
    /// A kernelspec directory holding one python kernelspec named `name` with extra metadata,
    /// for tests that need kernelspec-level settings.
    static func makeKernelSpecDirectory(name: String, metadata: [String: Any] = [:], argv: [String]? = nil,
                                        displayName: String? = nil) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ganymede-specs-\(UUID().uuidString)")
        let specDir = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: specDir, withIntermediateDirectories: true)
        let spec: [String: Any] = [
            "argv": argv ?? ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": displayName ?? "Test \(name)", "language": "python", "metadata": metadata,
        ]
        try JSONSerialization.data(withJSONObject: spec).write(to: specDir.appendingPathComponent("kernel.json"))
        return dir.path
    }

    func startKernel(name: String, env: [String: String]? = nil) async throws -> String {
        var body: [String: Any] = ["name": name]
        if let env { body["env"] = env }
        let data = try JSONSerialization.data(withJSONObject: body)
        let r = try await request(.POST, "/api/kernels", body: String(decoding: data, as: UTF8.self))
        guard r.status == 201, let id = r.object["id"] as? String else {
            throw TestFailure("kernel start failed: \(r.status) \(String(decoding: r.body, as: UTF8.self))")
        }
        return id
    }
}
