import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import JupyterProtocol
import KernelBridge
import Logging
import NIOCore
import NIOWebSocket

/// `GET /api/kernels/{id}/channels`: the kernel's channels over one WebSocket.
///
/// Before the upgrade: authentication, 404 for unknown kernels (EG PR #1376) and a wait for
/// the kernel's `kernel_info_reply` (jupyter_server waits likewise, up to
/// `kernel_info_timeout`). The subprotocol is v1 only when the client offers it.
struct ChannelsWebSocket {
    let registry: KernelRegistry
    let configuration: GatewayConfiguration
    let authenticator: TokenAuthenticator
    /// Open channels WebSockets per user, for `max_websockets_per_user`.
    let perUser = WebSocketsPerUser()

    /// The checks of the upgrade, before any byte of WebSocket: authentication, a known and
    /// live kernel, and its `kernel_info_reply`. A refusal carries the same JSON error the
    /// REST routes would give; `GatewayServerChannel` writes it, since the upgrade attempt
    /// consumed the request.
    func decide(_ request: Request, logger: Logger, configuration ws: WebSocketServerConfiguration) async -> GatewayServerChannel.UpgradeDecision {
        guard let id = Self.kernelID(path: request.uri.path, baseURL: configuration.baseURL) else {
            return .refuse(GatewayError(.notFound, "No WebSocket endpoint at \(request.uri.path)"))
        }
        guard let identity = authenticator.identify(request) else {
            return .refuse(GatewayError.unauthorized)
        }
        let kernel: ManagedKernel
        do {
            kernel = try await registry.kernel(id, for: identity)
        } catch {
            return .refuse(error)
        }
        guard let connection = await kernel.connection else {
            return .refuse(GatewayError.kernelNotFound(id))
        }
        if await kernel.isDead { return .refuse(GatewayError(.notFound, "Kernel \(id) is dead")) }
        let user = identity.user ?? kernel.username
        if let max = configuration.maxWebSocketsPerUser, await perUser.count(user) >= max {
            return .refuse(GatewayError(.tooManyRequests, reason: "Too Many Requests",
                                        "User '\(user)' already has \(max) open kernel WebSockets (max_websockets_per_user)"))
        }
        guard await connection.waitUntilReady(timeout: configuration.kernelInfoTimeout) else {
            return .refuse(GatewayError(.serviceUnavailable, reason: "Kernel not ready",
                                        "Kernel \(id) did not answer kernel_info_request within \(configuration.kernelInfoTimeout)"))
        }
        let proto = Self.negotiate(request)
        let headers: HTTPFields = proto == .v1 ? [.secWebSocketProtocol: WebSocketProtocol.v1.rawValue] : [:]
        let counter = perUser
        let run = GatewayServerChannel.runner(configuration: ws) { inbound, outbound, context in
            await counter.opened(user)
            await self.relay(inbound, outbound, request: request, kernelID: id, user: identity.user, logger: context.logger)
            await counter.closed(user)
        }
        return .upgrade(headers, run)
    }

    /// The kernel id of `<base>api/kernels/<id>/channels`, or nil for any other path.
    static func kernelID(path: String, baseURL: String) -> String? {
        guard path.hasPrefix(baseURL) else { return nil }
        let parts = path.dropFirst(baseURL.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "api", parts[1] == "kernels", parts[3] == "channels", !parts[2].isEmpty else { return nil }
        return String(parts[2])
    }

    /// The relay's key for a client's session: the session id itself, or, for a named user, the
    /// id qualified by the (length-prefixed, so unambiguous) user name.
    static func sessionKey(_ session: String, user: String?) -> String {
        guard let user else { return session }
        return "\(user.utf8.count):\(user)/\(session)"
    }

    static func negotiate(_ request: Request) -> WebSocketProtocol {
        let offered = request.headers[values: .secWebSocketProtocol]
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
        return WebSocketProtocol.negotiate(offered: offered)
    }

    /// The answer to a channels request that was not upgraded.
    func httpFallback(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let id = KernelRoutes.kernelID(context)
        let kernel = try await registry.kernel(id, for: context.identity)
        if await kernel.isDead {
            throw GatewayError(.notFound, "Kernel \(id) is dead")
        }
        if let connection = await kernel.connection, await !connection.isReady {
            throw GatewayError(.serviceUnavailable, reason: "Kernel not ready",
                               "Kernel \(id) did not answer kernel_info_request within \(configuration.kernelInfoTimeout)")
        }
        throw GatewayError(.badRequest, "This endpoint needs a WebSocket upgrade")
    }

    /// Relays between one WebSocket and the kernel's shared connection until either ends.
    func relay(_ inbound: WebSocketInboundStream, _ outbound: WebSocketOutboundWriter,
               request: Request, kernelID id: String, user: String?, logger: Logger) async {
        guard let kernel = try? await registry.kernel(id), let connection = await kernel.connection else { return }
        let proto = Self.negotiate(request)
        let requestedSession = request.uri.queryParameters.get("session_id").flatMap { $0.isEmpty ? nil : String($0) }
        // Named users' sessions are theirs alone: session ids travel in every message header, so a
        // user a kernel is shared with could otherwise take over (and read the replay of) the
        // owner's session by naming it.
        let session = Self.sessionKey(requestedSession ?? UUID().uuidString.lowercased(), user: user)
        var logger = logger
        logger[metadataKey: "kernel_id"] = "\(id)"
        // Only a client that names its session can come back for what it missed; one that comes
        // back before its old socket is seen closing takes the session over.
        if requestedSession != nil { await connection.replaceStale(session: session) }
        let (client, messages, queue) = await connection.addClient(session: session, replayable: requestedSession != nil,
                                                                   queueLimit: configuration.maxClientQueueBytes, user: user)
        logger.debug("websocket connected", metadata: ["session_id": "\(session)", "protocol": "\(proto == .v1 ? "v1" : "legacy")"])
        let maxSize = configuration.maxWebSocketMessageSize
        let logger2 = logger
        let metrics = registry.metrics
        metrics.webSocketOpened()
        defer { metrics.webSocketClosed() }
        // true: the writer ended (a write failed, or the stream ended: the client was cut or the
        // kernel connection closed); false: the reader ended (the client closed).
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                defer { queue.writerEnded() }
                for await message in messages {
                    guard queue.shouldWrite() else { return true }
                    let frame: WebSocketFrame = switch message.payload(for: proto) {
                    case .text(let bytes): WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(bytes: bytes))
                    case .binary(let bytes): WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(bytes: bytes))
                    }
                    metrics.relayed(message.channel, .toClient, bytes: frame.data.readableBytes)
                    do {
                        try await outbound.write(.custom(frame))
                    } catch {
                        return true
                    }
                    queue.written()
                }
                return true
            }
            group.addTask {
                do {
                    for try await message in inbound.messages(maxSize: maxSize) {
                        let payload: WebSocketPayload = switch message {
                        case .text(let s): .text(Array(s.utf8))
                        case .binary(let b): .binary(Array(b.readableBytesView))
                        }
                        switch Result(catching: { () throws(ProtocolError) in try WebSocketCodec.decode(payload, protocol: proto) }) {
                        case .success(let (channel, message)):
                            metrics.relayed(channel, .toKernel, bytes: payload.count)
                            await connection.send(message, on: channel, from: client)
                        case .failure(let error):
                            logger2.info("dropped invalid message from client", metadata: ["error": "\(error)"])
                        }
                    }
                } catch {
                    logger2.debug("websocket read ended", metadata: ["error": "\(error)"])
                }
                return false
            }
            // The writer is never cancelled mid-write: when the client closes it is told to stop
            // and woken by the end of its stream, so each message is either written or handed
            // back for replay by removeClient, never both, never neither.
            let writerEnded = await group.next() ?? true
            queue.stop()
            if writerEnded {
                // The gateway ends this socket (client cut for falling behind, kernel gone, or a
                // failed write): close it rather than cancel the reader. The close frame follows
                // everything written, so a client that reads on gets all of it and answers; a
                // cancelled inbound iterator would let the WebSocket layer skip that handshake and
                // close the channel under unsent and unread data. A client that never answers is
                // let go after 15 s.
                try? await outbound.close(.normalClosure, reason: nil)
                group.addTask {
                    try? await Task.sleep(for: .seconds(15))
                    return true
                }
                _ = await group.next()
                group.cancelAll()
            } else {
                await connection.finishStream(client)
            }
            await group.waitForAll()
        }
        await connection.removeClient(client, unwritten: queue)
        logger.debug("websocket closed", metadata: ["session_id": "\(session)"])
    }
}

/// Open channels WebSockets by user.
actor WebSocketsPerUser {
    private var open: [String: Int] = [:]
    func count(_ user: String) -> Int { open[user] ?? 0 }
    func opened(_ user: String) { open[user, default: 0] += 1 }
    func closed(_ user: String) {
        let n = (open[user] ?? 1) - 1
        open[user] = n > 0 ? n : nil
    }
}
