import Foundation
@testable import GatewayServer
import Logging
import Synchronization
import Testing

/// Log lines as JSON or text, with secret values and secret-named metadata masked.
struct LogHandlerTests {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        func append(_ s: String) { lines.withLock { $0.append(s) } }
        var all: [String] { lines.withLock { $0 } }
    }

    static func logger(_ format: GatewayLogHandler.Format, _ sink: Lines, redactor: GatewayLogHandler.Redactor) -> Logger {
        Logger(label: "test") { label in
            GatewayLogHandler(label: label, level: .info, format: format, redactor: redactor, write: { sink.append($0) })
        }
    }

    @Test func jsonLinesWithRedaction() throws {
        let sink = Lines()
        let redactor = GatewayLogHandler.Redactor.fromEnvironment(
            ["EG_AUTH_TOKEN": "tok-123456", "MY_DB_PASSWORD": "hunter2hunter2", "PATH": "/usr/bin", "AWS_CREDS": "AKIA-SECRET-VALUE"],
            authToken: "tok-123456", sensitivePhrases: ["creds"])
        var log = Self.logger(.json, sink, redactor: redactor)
        log[metadataKey: "kernel_id"] = "k-1"
        log.info("request with ?token=tok-123456 and hunter2hunter2 and AKIA-SECRET-VALUE",
                 metadata: ["user": "alice", "auth_token": "whatever", "path": "/usr/bin"])
        log.debug("below the level")
        let lines = sink.all
        #expect(lines.count == 1)
        let line = try #require(lines.first)
        #expect(!line.contains("tok-123456") && !line.contains("hunter2hunter2") && !line.contains("AKIA-SECRET-VALUE"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["kernel_id"] == "k-1")
        #expect(object["user"] == "alice")
        #expect(object["auth_token"] == GatewayLogHandler.Redactor.mask)
        #expect(object["path"] == "/usr/bin", "ordinary values stay")
        #expect(object["level"] == "info")
        #expect(object["message"]?.contains("?token=********") == true)
    }

    @Test func textLines() {
        let sink = Lines()
        var log = Self.logger(.text, sink, redactor: .init(secrets: ["s3cr3t-value"]))
        log[metadataKey: "kernel_id"] = "k-2"
        log.warning("saw s3cr3t-value")
        let line = sink.all.first ?? ""
        #expect(line.contains("warning test: kernel_id=k-2"))
        #expect(line.hasSuffix("saw ********\n"))
    }
}
