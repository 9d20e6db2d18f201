/// The ZeroMQ multipart encoding of a Jupyter message.
///
/// Messaging spec "The Wire Protocol":
/// `[ident..., b"<IDS|MSG>", hmac_hex, header, parent_header, metadata, content, buffer...]`.
public enum WireCodec {
    public static let delimiter: [UInt8] = Array("<IDS|MSG>".utf8)

    /// Frames to send to a kernel (no routing identities: a DEALER socket adds its own).
    public static func encode(_ message: JupyterMessage, signer: MessageSigner) -> [[UInt8]] {
        var frames: [[UInt8]] = [delimiter]
        frames.reserveCapacity(6 + message.buffers.count)
        frames.append(signer.signature(message.header, message.parentHeader, message.metadata, message.content))
        frames.append(message.header)
        frames.append(message.parentHeader)
        frames.append(message.metadata)
        frames.append(message.content)
        frames.append(contentsOf: message.buffers)
        return frames
    }

    /// Decodes and verifies frames received from a kernel. Identities (the iopub topic,
    /// ROUTER prefixes) before the delimiter are dropped.
    public static func decode(_ frames: [[UInt8]], signer: MessageSigner) throws(ProtocolError) -> JupyterMessage {
        guard let delimiterIndex = frames.firstIndex(of: delimiter) else { throw .missingDelimiter }
        let rest = frames.count - delimiterIndex - 1
        guard rest >= 5 else { throw .tooFewParts(rest) }
        let s = delimiterIndex + 1
        let signature = frames[s]
        guard signer.verify(signature, frames[s + 1], frames[s + 2], frames[s + 3], frames[s + 4]) else {
            throw .badSignature
        }
        let message = try JupyterMessage(
            header: frames[s + 1], parentHeader: frames[s + 2], metadata: frames[s + 3], content: frames[s + 4],
            buffers: Array(frames[(s + 5)...])
        )
        return message
    }
}
