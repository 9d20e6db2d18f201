/// A WebSocket message as it goes over the wire: a text or a binary frame.
public enum WebSocketPayload: Sendable, Equatable {
    case text([UInt8])
    case binary([UInt8])

    /// Bytes in the frame payload.
    public var count: Int {
        switch self {
        case .text(let b), .binary(let b): b.count
        }
    }
}

/// The kernel WebSocket protocols jupyter_server speaks
/// (jupyter_server `docs/source/developers/websocket-protocols.rst`).
public enum WebSocketProtocol: String, Sendable, CaseIterable {
    /// No subprotocol: JSON text frames, or the binary layout with big-endian u32 offsets
    /// for messages that carry buffers (`serialize_binary_message`).
    case legacy = ""
    /// `v1.kernel.websocket.jupyter.org`: always binary, little-endian u64 offsets,
    /// channel first, then the raw wire parts (`serialize_msg_to_ws_v1`).
    case v1 = "v1.kernel.websocket.jupyter.org"

    /// The subprotocol to select from what a client offered. v1 only when offered.
    public static func negotiate(offered: [String]) -> WebSocketProtocol {
        offered.contains(WebSocketProtocol.v1.rawValue) ? .v1 : .legacy
    }
}

/// Encodes and decodes kernel messages on a client WebSocket.
///
/// Decoding validates every count and offset against the frame length before slicing:
/// the peers were crashed or made to allocate gigabytes by crafted offset tables.
public enum WebSocketCodec {
    // MARK: Encode (gateway → client)

    public static func encode(_ message: JupyterMessage, channel: Channel, protocol proto: WebSocketProtocol) -> WebSocketPayload {
        switch proto {
        case .v1: .binary(encodeV1(message, channel: channel))
        case .legacy: message.buffers.isEmpty ? .text(legacyJSON(message, channel: channel, withBuffers: true))
                                              : .binary(encodeLegacyBinary(message, channel: channel))
        }
    }

    /// `{"header":…,"msg_id":…,"msg_type":…,"parent_header":…,"metadata":…,"content":…,"buffers":[],"channel":…}`
    /// assembled from the wire bytes: the kernel's JSON is spliced in, not re-serialised.
    public static func legacyJSON(_ message: JupyterMessage, channel: Channel, withBuffers: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(message.header.count + message.parentHeader.count + message.metadata.count
                            + message.content.count + message.msgID.utf8.count + message.msgType.utf8.count + 128)
        out.append(contentsOf: #"{"header":"#.utf8)
        out.append(contentsOf: message.header)
        out.append(contentsOf: #","msg_id":"#.utf8)
        JSONScanner.appendQuoted(message.msgID, to: &out)
        out.append(contentsOf: #","msg_type":"#.utf8)
        JSONScanner.appendQuoted(message.msgType, to: &out)
        out.append(contentsOf: #","parent_header":"#.utf8)
        out.append(contentsOf: message.parentHeader)
        out.append(contentsOf: #","metadata":"#.utf8)
        out.append(contentsOf: message.metadata)
        out.append(contentsOf: #","content":"#.utf8)
        out.append(contentsOf: message.content)
        if withBuffers {
            out.append(contentsOf: #","buffers":[]"#.utf8)
        }
        out.append(contentsOf: #","channel":"#.utf8)
        JSONScanner.appendQuoted(channel.rawValue, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// Legacy binary layout: `u32be nparts, u32be offset[nparts], json, buffer...`.
    public static func encodeLegacyBinary(_ message: JupyterMessage, channel: Channel) -> [UInt8] {
        frameLegacyBinary(json: legacyJSON(message, channel: channel, withBuffers: false), buffers: message.buffers)
    }

    /// Frames an already-serialised JSON blob with its buffers (jupyter_server `serialize_binary_message`).
    public static func frameLegacyBinary(json: [UInt8], buffers: [[UInt8]]) -> [UInt8] {
        let nparts = buffers.count + 1
        var offsets: [UInt32] = [UInt32(4 * (nparts + 1))]
        offsets.reserveCapacity(nparts)
        var last = Int(offsets[0]) + json.count
        for buffer in buffers {
            offsets.append(UInt32(last))
            last += buffer.count
        }
        var out: [UInt8] = []
        out.reserveCapacity(last)
        appendBigEndian(UInt32(nparts), to: &out)
        for offset in offsets { appendBigEndian(offset, to: &out) }
        out.append(contentsOf: json)
        for buffer in buffers { out.append(contentsOf: buffer) }
        return out
    }

    /// v1 layout (jupyter_server `serialize_msg_to_ws_v1`).
    public static func encodeV1(_ message: JupyterMessage, channel: Channel) -> [UInt8] {
        frameV1(channel: Array(channel.rawValue.utf8),
                parts: [message.header, message.parentHeader, message.metadata, message.content] + message.buffers)
    }

    public static func frameV1(channel: [UInt8], parts: [[UInt8]]) -> [UInt8] {
        let n = parts.count + 2
        var offsets: [UInt64] = [UInt64(8 * (n + 1))]
        offsets.reserveCapacity(n)
        offsets.append(offsets[0] + UInt64(channel.count))
        for part in parts { offsets.append(offsets[offsets.count - 1] + UInt64(part.count)) }
        var out: [UInt8] = []
        out.reserveCapacity(Int(offsets[offsets.count - 1]))
        appendLittleEndian(UInt64(n), to: &out)
        for offset in offsets { appendLittleEndian(offset, to: &out) }
        out.append(contentsOf: channel)
        for part in parts { out.append(contentsOf: part) }
        return out
    }

    // MARK: Decode (client → gateway)

    public static func decode(_ payload: WebSocketPayload, protocol proto: WebSocketProtocol) throws(ProtocolError) -> (Channel, JupyterMessage) {
        switch (proto, payload) {
        case (.legacy, .text(let bytes)):
            return try decodeLegacyJSON(bytes, buffers: [])
        case (.legacy, .binary(let bytes)):
            let parts = try splitLegacyBinary(bytes)
            try requireUTF8(parts[0], part: "message")
            return try decodeLegacyJSON(parts[0], buffers: Array(parts[1...]))
        case (.v1, .binary(let bytes)):
            let decoded = try decodeV1(bytes)
            let m = decoded.1
            for (name, part) in [("header", m.header), ("parent_header", m.parentHeader), ("metadata", m.metadata), ("content", m.content)] {
                try requireUTF8(part, part: name)
            }
            return decoded
        case (.v1, .text):
            throw .invalidFrame("text frame on the v1 protocol")
        }
    }

    /// Parses a legacy JSON message. A missing channel means shell (as jupyter_server).
    public static func decodeLegacyJSON(_ bytes: [UInt8], buffers: [[UInt8]]) throws(ProtocolError) -> (Channel, JupyterMessage) {
        let members: [(key: String, value: Range<Int>)]
        do {
            members = try JSONScanner.topLevelMembers(of: bytes)
        } catch {
            throw .invalidJSON(part: "message")
        }
        var header: [UInt8]?
        var parent: [UInt8] = Array("{}".utf8)
        var metadata: [UInt8] = Array("{}".utf8)
        var content: [UInt8] = Array("{}".utf8)
        var channel = Channel.shell
        for member in members {
            let value = Array(bytes[member.value])
            switch member.key {
            case "header": header = value
            case "parent_header": if !isNull(value) { parent = value }
            case "metadata": if !isNull(value) { metadata = value }
            case "content": if !isNull(value) { content = value }
            case "channel":
                guard let name = try? JSONScanner.decodeString(bytes, member.value) else {
                    throw .invalidFrame("channel is not a string")
                }
                guard let c = Channel(rawValue: name) else { throw .unknownChannel(name) }
                channel = c
            default: break
            }
        }
        guard let header else { throw .missingField("header") }
        for (name, part) in [("parent_header", parent), ("metadata", metadata), ("content", content)] {
            guard part.first == UInt8(ascii: "{") else { throw .invalidJSON(part: name) }
        }
        let message = try JupyterMessage(header: header, parentHeader: parent, metadata: metadata, content: content, buffers: buffers)
        return (channel, message)
    }

    static func isNull(_ value: [UInt8]) -> Bool { value == Array("null".utf8) }

    /// JSON inside binary frames is not covered by the WebSocket layer's UTF-8 check of text
    /// frames; a kernel's `Session.unpack` would reject it, so the gateway rejects it first.
    static func requireUTF8(_ bytes: [UInt8], part: String) throws(ProtocolError) {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return
            case .error: throw .invalidJSON(part: part + " (not UTF-8)")
            }
        }
    }

    /// Splits a legacy binary frame into its JSON part and buffers, validating the table.
    public static func splitLegacyBinary(_ bytes: [UInt8]) throws(ProtocolError) -> [[UInt8]] {
        guard bytes.count >= 8 else { throw .invalidFrame("binary frame shorter than its header") }
        let nparts = Int(readBigEndian32(bytes, 0))
        guard nparts >= 1 else { throw .invalidFrame("binary frame with no parts") }
        guard nparts <= (bytes.count - 4) / 4 else { throw .invalidFrame("offset table longer than the frame") }
        let tableEnd = 4 * (nparts + 1)
        var offsets: [Int] = []
        offsets.reserveCapacity(nparts + 1)
        for i in 0..<nparts {
            offsets.append(Int(readBigEndian32(bytes, 4 * (i + 1))))
        }
        offsets.append(bytes.count)
        guard offsets[0] >= tableEnd else { throw .invalidFrame("first offset inside the offset table") }
        for i in 0..<nparts where offsets[i] > offsets[i + 1] {
            throw .invalidFrame("offsets out of order or beyond the frame")
        }
        return (0..<nparts).map { Array(bytes[offsets[$0]..<offsets[$0 + 1]]) }
    }

    public static func decodeV1(_ bytes: [UInt8]) throws(ProtocolError) -> (Channel, JupyterMessage) {
        guard bytes.count >= 8 else { throw .invalidFrame("v1 frame shorter than its header") }
        let n64 = readLittleEndian64(bytes, 0)
        // channel + 4 JSON parts need 6 offsets at least.
        guard n64 >= 6, n64 <= UInt64((bytes.count - 8) / 8) else { throw .invalidFrame("bad v1 offset count \(n64)") }
        let n = Int(n64)
        var offsets: [Int] = []
        offsets.reserveCapacity(n)
        for i in 0..<n {
            let o = readLittleEndian64(bytes, 8 * (i + 1))
            guard o <= UInt64(bytes.count) else { throw .invalidFrame("v1 offset beyond the frame") }
            offsets.append(Int(o))
        }
        guard offsets[0] >= 8 * (n + 1) else { throw .invalidFrame("v1 offset inside the offset table") }
        for i in 0..<(n - 1) where offsets[i] > offsets[i + 1] {
            throw .invalidFrame("v1 offsets out of order")
        }
        let channelName = String(decoding: bytes[offsets[0]..<offsets[1]], as: UTF8.self)
        guard let channel = Channel(rawValue: channelName) else { throw .unknownChannel(channelName) }
        var parts: [[UInt8]] = []
        parts.reserveCapacity(n - 2)
        for i in 1..<(n - 1) { parts.append(Array(bytes[offsets[i]..<offsets[i + 1]])) }
        let message = try JupyterMessage(header: parts[0], parentHeader: parts[1], metadata: parts[2], content: parts[3],
                                         buffers: Array(parts[4...]))
        return (channel, message)
    }

    // MARK: Integers

    static func appendBigEndian(_ value: UInt32, to out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: value >> 24))
        out.append(UInt8(truncatingIfNeeded: value >> 16))
        out.append(UInt8(truncatingIfNeeded: value >> 8))
        out.append(UInt8(truncatingIfNeeded: value))
    }

    static func appendLittleEndian(_ value: UInt64, to out: inout [UInt8]) {
        for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    static func readBigEndian32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8 | UInt32(bytes[at + 3])
    }

    static func readLittleEndian64(_ bytes: [UInt8], _ at: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in (0..<8).reversed() { value = value << 8 | UInt64(bytes[at + i]) }
        return value
    }
}
