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
/// - a refused upgrade is not answered with a bare 400: the request goes on to the normal
///   HTTP router, so an unknown kernel gets EG's 404 JSON and a missing token 401 JSON;
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
                        try channel.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
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
            // Unparseable requests get NIO's 400 and a close (hummingbird-websocket turns this off).
            configuration.enableErrorHandling = true
            configuration.enableResponseHeaderValidation = false
            let negotiation = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
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
