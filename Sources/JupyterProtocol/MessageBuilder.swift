import Foundation

/// Builds messages the gateway itself originates: the connect-time `kernel_info_request`,
/// synthesized `status` messages (`restarting`, `dead`) and shutdown/interrupt requests.
///
/// Headers follow messaging spec 5.x "General Message Format".
public struct MessageBuilder: Sendable {
    public let session: String
    public let username: String
    public static let protocolVersion = "5.4"

    public init(session: String = UUID().uuidString.lowercased(), username: String = "ganymede") {
        self.session = session
        self.username = username
    }

    public func message(type: String, content: [UInt8] = Array("{}".utf8), parentHeader: [UInt8] = Array("{}".utf8)) -> JupyterMessage {
        var header: [UInt8] = []
        header.append(contentsOf: #"{"msg_id":"#.utf8)
        let msgID = UUID().uuidString.lowercased()
        JSONScanner.appendQuoted(msgID, to: &header)
        header.append(contentsOf: #","msg_type":"#.utf8)
        JSONScanner.appendQuoted(type, to: &header)
        header.append(contentsOf: #","session":"#.utf8)
        JSONScanner.appendQuoted(session, to: &header)
        header.append(contentsOf: #","username":"#.utf8)
        JSONScanner.appendQuoted(username, to: &header)
        header.append(contentsOf: #","date":"#.utf8)
        JSONScanner.appendQuoted(Timestamp.iso8601(Date()), to: &header)
        header.append(contentsOf: #","version":"#.utf8)
        JSONScanner.appendQuoted(Self.protocolVersion, to: &header)
        header.append(UInt8(ascii: "}"))
        // The parts above are built from valid JSON, so this cannot fail.
        return try! JupyterMessage(header: header, parentHeader: parentHeader, metadata: Array("{}".utf8), content: content)
    }

    /// An iopub `status` message with an empty parent header.
    public func status(_ state: String, reason: String? = nil) -> JupyterMessage {
        var content: [UInt8] = Array(#"{"execution_state":"#.utf8)
        JSONScanner.appendQuoted(state, to: &content)
        if let reason {
            content.append(contentsOf: #","reason":"#.utf8)
            JSONScanner.appendQuoted(reason, to: &content)
        }
        content.append(UInt8(ascii: "}"))
        return message(type: "status", content: content)
    }
}

/// Timestamps in the format jupyter_server's gateway client parses strictly:
/// `%Y-%m-%dT%H:%M:%S.%fZ` (always six fractional digits and a `Z`).
public enum Timestamp {
    public static func iso8601(_ date: Date) -> String {
        let seconds = date.timeIntervalSince1970
        var whole = time_t(seconds.rounded(.down))
        var micros = Int(((seconds - Double(whole)) * 1_000_000).rounded())
        if micros >= 1_000_000 {
            whole += 1
            micros -= 1_000_000
        }
        var tm = tm()
        gmtime_r(&whole, &tm)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let microsString = String(micros)
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2))."
            + String(repeating: "0", count: 6 - microsString.count) + microsString + "Z"
    }
}
