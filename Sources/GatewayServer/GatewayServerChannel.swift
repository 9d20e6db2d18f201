import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
@_spi(WSInternal) import WSCore

/// The server's connection pipeline: HTTP/1.1 with the kernel-channels WebSocket upgrade.
///
/// Modelled on hummingbird-websocket's `HTTP1WebSocketUpgradeChannel`, with two differences
/// that rule 4 ("bad input gets a clear error") needs:
/// - a refused upgrade is not answered with a bare 400 but with the JSON error of the
///   decision (EG's 404 for an unknown kernel, 401 for a missing token, 503 if not ready);
/// - NIO's protocol error handler is on, so a request that does not parse as HTTP is
///   answered 400 and closed instead of holding the connection open.
struct GatewayServerChannel: ServerChildChannel, HTTPChannelHandler {
    typealias WebSocketRun = @Sendable (NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, Logger) async -> Void
    /// Decides an upgrade request.
    typealias Decide = @Sendable (Request, Logger) async -> UpgradeDecision

    enum UpgradeDecision: Sendable {
        /// Switch protocols, with these response headers, and run this handler.
        case upgrade(HTTPFields, WebSocketRun)
        /// Answer with this error instead (the request is consumed by the upgrade attempt,
        /// so the router cannot see it any more).
        case refuse(GatewayError)
    }

    enum UpgradeResult: Sendable {
        case websocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, WebSocketRun, Logger)
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, GatewayError)
    }

    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    let responder: Responder
    let decide: Decide
    let maxFrameSize: Int
    /// How long a connection may take to send a request head, and stay idle between requests.
    var idleTimeout: TimeAmount? = .seconds(60)

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let chosen = NIOLockedValueBox<WebSocketRun?>(nil)
            /// Set once an upgrade was attempted: then the request has been consumed and the
            /// answer is written here, not by the router.
            let refusal = NIOLockedValueBox<GatewayError?>(nil)
            let decide = self.decide
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: maxFrameSize,
                shouldUpgrade: { channel, head in
                    let promise = channel.eventLoop.makePromise(of: HTTPHeaders?.self)
                    refusal.withLockedValue { $0 = GatewayError(.badRequest, "Invalid WebSocket upgrade request") }
                    promise.completeWithTask {
                        guard let request = try? HTTPRequest(head, secure: false, splitCookie: false) else { return nil }
                        switch await decide(Request(head: request, body: .init(buffer: ByteBuffer())), logger) {
                        case .upgrade(let fields, let run):
                            chosen.withLockedValue { $0 = run }
                            refusal.withLockedValue { $0 = nil }
                            return HTTPHeaders(fields)
                        case .refuse(let error):
                            refusal.withLockedValue { $0 = error }
                            return nil
                        }
                    }
                    return promise.futureResult
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        // HTTP is over on this connection: frames must not meet an HTTP handler.
                        if let responder = try? channel.pipeline.syncOperations.handler(type: ProtocolErrorResponder.self) {
                            channel.pipeline.syncOperations.removeHandler(responder, promise: nil)
                        }
                        let asyncChannel = try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        guard let run = chosen.withLockedValue({ $0 }) else { throw ChannelError.inappropriateOperationForState }
                        return UpgradeResult.websocket(asyncChannel, run, logger)
                    }
                }
            )
            let serverUpgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(idleTimeout: idleTimeout.map {
                            Duration.nanoseconds($0.nanoseconds)
                        }, logger: logger))
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        if let error = refusal.withLockedValue({ $0 }) {
                            return UpgradeResult.refused(asyncChannel, error)
                        }
                        return UpgradeResult.notUpgraded(asyncChannel)
                    }
                }
            )
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(upgradeConfiguration: serverUpgradeConfiguration)
            configuration.enablePipelining = false
            // Unparseable requests get a JSON 400 (431 for oversized headers) and a close; NIO's
            // own handler would answer an empty 400 (hummingbird-websocket turns it off).
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            let negotiation = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            let upgradeHandler = try channel.pipeline.syncOperations.handler(type: NIOTypedHTTPServerUpgradeHandler<UpgradeResult>.self)
            try channel.pipeline.syncOperations.addHandler(UpgradeHeaderValidator(), position: .before(upgradeHandler))
            try channel.pipeline.syncOperations.addHandler(ProtocolErrorResponder(), position: .before(upgradeHandler))
            if let idleTimeout {
                try channel.pipeline.syncOperations.addHandler(RequestHeadDeadline(timeout: idleTimeout), position: .before(upgradeHandler))
            }
            return Value(upgradeResult: negotiation, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .notUpgraded(let http1):
                await handleHTTP(asyncChannel: http1, logger: logger)
            case .websocket(let asyncChannel, let run, let logger):
                await run(asyncChannel, logger)
            case .refused(let http1, let error):
                try await http1.executeThenClose { _, outbound in
                    let body = GatewayError.jsonBody(reason: error.reason, message: error.message)
                    let head = HTTPResponse(status: error.status, headerFields: [
                        .connection: "close", .contentType: "application/json", .contentLength: String(body.readableBytes),
                    ])
                    try await outbound.write(contentsOf: [.head(head), .body(body), .end(nil)])
                }
            }
        } catch {
            logger.debug("connection ended before a request was handled", metadata: ["error": "\(error)"])
            try? await value.channel.close()
        }
    }
}

/// The context WebSocket handlers of the gateway run with.
struct GatewayWebSocketContext: WebSocketContext {
    let logger: Logger
}

extension GatewayServerChannel {
    /// Wraps a WebSocket data handler into a connection runner (frame handling, pings, close).
    static func runner(
        configuration: WebSocketServerConfiguration,
        handler: @escaping WebSocketDataHandler<GatewayWebSocketContext>
    ) -> WebSocketRun {
        { asyncChannel, logger in
            do {
                _ = try await WebSocketHandler.handle(
                    type: .server,
                    configuration: .init(extensions: [], autoPing: configuration.autoPing, closeTimeout: configuration.closeTimeout,
                                         validateUTF8: configuration.validateUTF8, maxFrameSize: configuration.maxFrameSize),
                    asyncChannel: asyncChannel, context: GatewayWebSocketContext(logger: logger), handler: handler)
            } catch {
                logger.debug("websocket ended", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Answers WebSocket upgrade requests whose handshake headers are unusable (RFC 6455 §4.2.1:
/// no `Sec-WebSocket-Key`, or a version other than 13) with 400 / 426 JSON. NIO's upgrader
/// would close such connections without a response. Removes itself after the first request
/// head, before any upgrade can change the pipeline.
final class UpgradeHeaderValidator: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var rejecting = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if rejecting { return }
        let part = unwrapInboundIn(data)
        guard case .head(let head) = part else {
            context.fireChannelRead(data)
            return
        }
        let wantsWebSocket = head.headers[canonicalForm: "upgrade"].contains { $0.lowercased() == "websocket" }
            && head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
        if wantsWebSocket {
            let key = head.headers.first(name: "Sec-WebSocket-Key") ?? ""
            let version = head.headers.first(name: "Sec-WebSocket-Version") ?? ""
            var error: GatewayError?
            var extra: [(String, String)] = []
            if version != "13" {
                error = GatewayError(.upgradeRequired, "WebSocket version '\(version)' is not supported; use 13")
                extra.append(("Sec-WebSocket-Version", "13"))
            } else if key.trimmingCharacters(in: .whitespaces).isEmpty {
                error = GatewayError(.badRequest, "WebSocket upgrade without a Sec-WebSocket-Key")
            }
            if let error {
                rejecting = true
                let body = GatewayError.jsonBody(reason: error.reason, message: error.message)
                var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", String(body.readableBytes)),
                                           ("Connection", "close")])
                for (name, value) in extra { headers.add(name: name, value: value) }
                let response = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: Int(error.status.code)),
                                                headers: headers)
                context.write(wrapOutboundOut(.head(response)), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
                return
            }
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
