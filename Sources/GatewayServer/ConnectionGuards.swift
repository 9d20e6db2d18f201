import NIOCore
import NIOHTTP1

/// Closes a connection whose first request head has not arrived within the deadline, so a
/// client that opens connections and trickles header bytes (slowloris) cannot hold them open.
/// Between keep-alive requests the same bound applies through `HTTPConnectionStateHandler`'s
/// idle timeout. Removes itself once a head has arrived.
final class RequestHeadDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            deadline?.cancel()
            deadline = nil
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
            return
        }
        context.fireChannelRead(data)
    }
}

/// Answers requests that do not parse as HTTP with the gateway's JSON error instead of NIO's
/// empty 400: 431 when the header block is too large (llhttp's limit, 80 KiB), 413 for a
/// declared body beyond the parser's bounds, 400 otherwise; then closes, as NIO's
/// `HTTPServerProtocolErrorHandler` does (whose bookkeeping of in-flight responses this follows:
/// nothing is written into the middle of a response already under way).
final class ProtocolErrorResponder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responseInFlight = false

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if !responseInFlight {
            let failure: GatewayError = switch parserError {
            case .headerOverflow:
                GatewayError(.init(code: 431, reasonPhrase: "Request Header Fields Too Large"), reason: "Request Header Fields Too Large",
                             "The request's header block is larger than the gateway accepts (80 KiB).")
            default:
                GatewayError(.badRequest, "The request is not valid HTTP/1.1 (\(parserError)).")
            }
            let body = GatewayError.jsonBody(reason: failure.reason, message: failure.message)
            let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: Int(failure.status.code)),
                                        headers: HTTPHeaders([("Content-Type", "application/json"),
                                                              ("Content-Length", String(body.readableBytes)), ("Connection", "close")]))
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200: responseInFlight = true
        case .end: responseInFlight = false
        default: break
        }
        context.write(data, promise: promise)
    }
}
