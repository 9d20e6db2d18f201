import Foundation
import Logging
import Synchronization

/// The gateway's log lines, as text or JSON (one object per line), with secrets redacted.
///
/// Redaction is by value and by name: every configured secret value (the auth token, the
/// values of gateway environment variables whose names contain an EG_SENSITIVE_ENV_KEYS phrase)
/// is masked wherever it appears in a message or metadata value, and metadata whose key names
/// a secret (`token`, `password`, `secret`, or a sensitive phrase) is masked whole. EG masks
/// sensitive env values only in its debug dump of the kernel env (`launch_process`); here it
/// applies to every line.
public struct GatewayLogHandler: LogHandler {
    public enum Format: String, Sendable, CaseIterable {
        case text, json
    }

    /// What redacts: secret values and sensitive key phrases.
    public struct Redactor: Sendable {
        public static let mask = "********"
        /// Names that always mean a secret, in env variable and metadata key names.
        static let defaultPhrases = ["token", "password", "passwd", "secret"]
        let secrets: [String]
        let keyPhrases: [String]

        public init(secrets: [String], keyPhrases: [String] = []) {
            // Longest first, so a secret containing another is masked whole; very short values
            // would mask ordinary words and are not secrets worth the name.
            self.secrets = Array(Set(secrets.filter { $0.count >= 4 })).sorted { $0.count > $1.count }
            self.keyPhrases = (Self.defaultPhrases + keyPhrases.map { $0.lowercased() }).filter { !$0.isEmpty }
        }

        /// Secrets found in the gateway's own environment: the auth tokens and every variable
        /// whose name contains one of the sensitive phrases.
        public static func fromEnvironment(_ env: [String: String], authToken: String, sensitivePhrases: [String]) -> Redactor {
            var secrets = [authToken]
            let phrases = (sensitivePhrases.map { $0.lowercased() } + defaultPhrases).filter { !$0.isEmpty }
            for (name, value) in env {
                let lower = name.lowercased()
                if name.hasSuffix("_AUTH_TOKEN") || phrases.contains(where: { lower.contains($0) }) { secrets.append(value) }
            }
            return Redactor(secrets: secrets, keyPhrases: phrases)
        }

        public func redact(_ text: String) -> String {
            guard !secrets.isEmpty else { return text }
            var out = text
            for secret in secrets where out.contains(secret) {
                out = out.replacingOccurrences(of: secret, with: Self.mask)
            }
            return out
        }

        public func isSensitiveKey(_ key: String) -> Bool {
            let lower = key.lowercased()
            return keyPhrases.contains { lower.contains($0) }
        }
    }

    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let format: Format
    let redactor: Redactor
    let write: @Sendable (String) -> Void

    public init(label: String, level: Logger.Level, format: Format, redactor: Redactor,
                metadataProvider: Logger.MetadataProvider? = nil,
                write: @escaping @Sendable (String) -> Void = GatewayLogHandler.standardError) {
        self.label = label
        self.logLevel = level
        self.format = format
        self.redactor = redactor
        self.metadataProvider = metadataProvider
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let message = redactor.redact("\(event.message)")
        var fields: [(String, String)] = []
        for (key, value) in all.sorted(by: { $0.key < $1.key }) {
            fields.append((key, redactor.isSensitiveKey(key) ? Redactor.mask : redactor.redact("\(value)")))
        }
        let time = Self.timestamp()
        switch format {
        case .text:
            let meta = fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            write("\(time) \(event.level) \(label):\(meta.isEmpty ? "" : " " + meta) [\(event.source)] \(message)\n")
        case .json:
            var object: [String: String] = ["time": time, "level": "\(event.level)", "logger": label,
                                            "source": event.source, "message": message]
            for (key, value) in fields where object[key] == nil { object[key] = value }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
                ?? Data(#"{"message":"unencodable log line"}"#.utf8)
            write(String(decoding: data, as: UTF8.self) + "\n")
        }
    }

    static func timestamp() -> String {
        Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date())
    }

    /// Writes whole lines to stderr; one `write(2)` per line keeps lines from interleaving.
    public static let standardError: @Sendable (String) -> Void = { line in
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Foundation.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if n <= 0 { break }
                offset += n
            }
        }
    }
}
