/// One Jupyter message with its four JSON parts kept as the bytes that travel on the wire.
///
/// Messaging spec 5.x "The Wire Protocol": a message is `header, parent_header, metadata,
/// content` (JSON dicts) plus zero or more binary `buffers`. Only the header fields needed
/// for routing are decoded; content is never re-serialised by the gateway.
public struct JupyterMessage: Sendable, Equatable {
    public var header: [UInt8]
    public var parentHeader: [UInt8]
    public var metadata: [UInt8]
    public var content: [UInt8]
    public var buffers: [[UInt8]]

    /// `header.msg_id`.
    public var msgID: String
    /// `header.msg_type`.
    public var msgType: String
    /// `header.session` (empty when absent).
    public var session: String
    /// `parent_header.msg_id`, when the message has a parent.
    public var parentMsgID: String?
    /// `parent_header.msg_type`, when the message has a parent.
    public var parentMsgType: String?

    public init(
        header: [UInt8], parentHeader: [UInt8], metadata: [UInt8], content: [UInt8], buffers: [[UInt8]] = []
    ) throws(ProtocolError) {
        self.header = header
        self.parentHeader = parentHeader
        self.metadata = metadata
        self.content = content
        self.buffers = buffers
        let fields = try Self.parseHeader(header)
        self.msgID = fields.msgID
        self.msgType = fields.msgType
        self.session = fields.session
        (self.parentMsgID, self.parentMsgType) = try Self.parentFields(parentHeader)
        do {
            try JSONScanner.validate(metadata)
        } catch {
            throw .invalidJSON(part: "metadata")
        }
        do {
            try JSONScanner.validate(content)
        } catch {
            throw .invalidJSON(part: "content")
        }
    }

    /// Validates the four JSON parts and reads the routing fields of the header.
    static func parseHeader(_ header: [UInt8]) throws(ProtocolError) -> (msgID: String, msgType: String, session: String) {
        let members: [(key: String, value: Range<Int>)]
        do {
            members = try JSONScanner.topLevelMembers(of: header)
        } catch {
            throw .invalidJSON(part: "header")
        }
        var msgID: String?
        var msgType: String?
        var session = ""
        for member in members {
            switch member.key {
            case "msg_id": msgID = try? JSONScanner.decodeString(header, member.value)
            case "msg_type": msgType = try? JSONScanner.decodeString(header, member.value)
            case "session": session = (try? JSONScanner.decodeString(header, member.value)) ?? ""
            default: break
            }
        }
        guard let msgID, !msgID.isEmpty else { throw .missingField("header.msg_id") }
        guard let msgType, !msgType.isEmpty else { throw .missingField("header.msg_type") }
        return (msgID, msgType, session)
    }

    static func parentFields(_ parent: [UInt8]) throws(ProtocolError) -> (String?, String?) {
        let members: [(key: String, value: Range<Int>)]
        do {
            members = try JSONScanner.topLevelMembers(of: parent)
        } catch {
            throw .invalidJSON(part: "parent_header")
        }
        var id: String?
        var type: String?
        for member in members {
            if member.key == "msg_id" { id = try? JSONScanner.decodeString(parent, member.value) }
            if member.key == "msg_type" { type = try? JSONScanner.decodeString(parent, member.value) }
        }
        return (id, type)
    }
}

/// Why bytes from a client or a kernel were not a valid Jupyter message.
public enum ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidJSON(part: String)
    case missingField(String)
    case missingDelimiter
    case tooFewParts(Int)
    case badSignature
    case invalidFrame(String)
    case unknownChannel(String)
    case tooLarge(Int)

    public var description: String {
        switch self {
        case .invalidJSON(let part): "\(part) is not a JSON object"
        case .missingField(let field): "missing \(field)"
        case .missingDelimiter: "no <IDS|MSG> delimiter"
        case .tooFewParts(let n): "message has \(n) parts after the delimiter, need at least 5"
        case .badSignature: "HMAC signature does not match"
        case .invalidFrame(let why): "invalid frame: \(why)"
        case .unknownChannel(let name): "unknown channel '\(name)'"
        case .tooLarge(let size): "message of \(size) bytes exceeds the limit"
        }
    }
}
