import JupyterProtocol
import Synchronization

/// A kernel message on its way to one or more WebSockets.
///
/// Encoded at most once per WebSocket protocol, however many clients receive it: fan-out
/// to twenty clients costs one encoding, not twenty (the peers re-encode per socket).
public final class OutboundMessage: Sendable {
    public let channel: Channel
    public let message: JupyterMessage
    /// Raw bytes of the message's parts: what a client queue counts.
    public let size: Int
    private let cache = Mutex<[WebSocketProtocol: WebSocketPayload]>([:])

    public init(channel: Channel, message: JupyterMessage) {
        self.channel = channel
        self.message = message
        self.size = KernelConnection.byteCount(message)
    }

    public func payload(for proto: WebSocketProtocol) -> WebSocketPayload {
        if let cached = cache.withLock({ $0[proto] }) { return cached }
        let encoded = WebSocketCodec.encode(message, channel: channel, protocol: proto)
        cache.withLock { $0[proto] = encoded }
        return encoded
    }
}
