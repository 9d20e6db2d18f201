import AsyncHTTPClient
import Foundation
@testable import GatewayServer
import Logging
import NIOCore
import NIOSSL
import Testing
import WSClient

/// HTTPS and WSS with a test CA made by `openssl` for each run, and mutual TLS.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct TLSTests {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, in a temp dir.
    struct TestPKI {
        let dir: URL
        var ca: String { dir.appendingPathComponent("ca.pem").path }
        var serverCert: String { dir.appendingPathComponent("server.pem").path }
        var serverKey: String { dir.appendingPathComponent("server.key").path }
        var clientCert: String { dir.appendingPathComponent("client.pem").path }
        var clientKey: String { dir.appendingPathComponent("client.key").path }

        static func make() throws -> TestPKI {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ganymede-pki-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let script = """
            set -e
            cd '\(dir.path)'
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=ganymede-test-ca 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > server.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile server.ext 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=alice 2>/dev/null
            printf 'extendedKeyUsage=clientAuth\\n' > client.ext
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 1 -extfile client.ext 2>/dev/null
            """
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", script]
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw TestFailure("openssl failed: \(p.terminationStatus)") }
            return TestPKI(dir: dir)
        }
    }

    static func client(_ pki: TestPKI, withCertificate: Bool) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(pki.ca))
        if withCertificate {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(pki.clientCert).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: pki.clientKey, format: .pem))
        }
        return tls
    }

    static func get(_ url: String, tls: TLSConfiguration) async throws -> Int {
        var configuration = HTTPClient.Configuration()
        configuration.tlsConfiguration = tls
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
            _ = try await response.body.collect(upTo: 1 << 20)
            try await client.shutdown()
            return Int(response.status.code)
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    /// Opens a WSS connection, sends kernel_info_request and waits for the reply.
    static func kernelInfoOverWSS(port: Int, kernel: String, tls: TLSConfiguration) async throws -> Bool {
        let got = ManagedAtomicFlag()
        var configuration = WebSocketClientConfiguration()
        configuration.sniHostname = "localhost"  // WSClient would put the IP in SNI, which TLS forbids
        try await WebSocketClient.connect(url: "wss://127.0.0.1:\(port)/api/kernels/\(kernel)/channels", configuration: configuration,
                                          tlsConfiguration: tls, logger: Logger(label: "wss")) { inbound, outbound, _ in
            let request = #"{"header":{"msg_id":"m1","msg_type":"kernel_info_request","session":"s","username":"u","version":"5.3","date":"2026-01-01T00:00:00.000000Z"},"parent_header":{},"metadata":{},"content":{},"channel":"shell"}"#
            try await outbound.write(.text(request))
            for try await message in inbound.messages(maxSize: 1 << 20) {
                if case .text(let text) = message, text.contains("kernel_info_reply") {
                    got.set()
                    break
                }
            }
        }
        return got.value
    }

    @Test func httpsAndWSS() async throws {
        let pki = try TestPKI.make()
        defer { try? FileManager.default.removeItem(at: pki.dir) }
        let tls = try TLSSettings.load(certFile: pki.serverCert, keyFile: pki.serverKey, clientCAFile: nil)
        try await TestGateway.with(configure: { $0.tls = tls }) { gw in
            let base = "https://127.0.0.1:\(gw.port)"
            #expect(try await Self.get(base + "/api", tls: Self.client(pki, withCertificate: false)) == 200)
            // A client that does not trust the CA is refused by its own verification.
            await #expect(throws: (any Error).self) {
                _ = try await Self.get(base + "/api", tls: .makeClientConfiguration())
            }
            var configuration = HTTPClient.Configuration()
            configuration.tlsConfiguration = try Self.client(pki, withCertificate: false)
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            var post = HTTPClientRequest(url: base + "/api/kernels")
            post.method = .POST
            post.body = .bytes(ByteBuffer(string: #"{"name":"python3"}"#))
            let created = try await client.execute(post, timeout: .seconds(90))
            let body = try await created.body.collect(upTo: 1 << 20)
            try await client.shutdown()
            #expect(created.status.code == 201)
            let id = try #require((try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any])?["id"] as? String)
            #expect(try await Self.kernelInfoOverWSS(port: gw.port, kernel: id, tls: Self.client(pki, withCertificate: false)))
        }
    }

    @Test func mutualTLSRequiresAClientCertificate() async throws {
        let pki = try TestPKI.make()
        defer { try? FileManager.default.removeItem(at: pki.dir) }
        let tls = try TLSSettings.load(certFile: pki.serverCert, keyFile: pki.serverKey, clientCAFile: pki.ca)
        let withCert = try Self.client(pki, withCertificate: true)
        let withoutCert = try Self.client(pki, withCertificate: false)
        try await TestGateway.with(configure: { $0.tls = tls }) { gw in
            let base = "https://127.0.0.1:\(gw.port)"
            let first = try await Self.get(base + "/api", tls: withCert)
            #expect(first == 200)
            await #expect(throws: (any Error).self, "no client certificate: handshake refused") {
                _ = try await Self.get(base + "/api", tls: withoutCert)
            }
            // The server still serves after refused handshakes.
            let again = try await Self.get(base + "/api", tls: withCert)
            #expect(again == 200)
        }
    }

    @Test func badFilesGiveClearErrors() throws {
        #expect(throws: TLSSettings.LoadError.self) {
            _ = try TLSSettings.load(certFile: "/nonexistent.pem", keyFile: "/nonexistent.key", clientCAFile: nil)
        }
        let pki = try TestPKI.make()
        defer { try? FileManager.default.removeItem(at: pki.dir) }
        do {
            _ = try TLSSettings.load(certFile: pki.serverCert, keyFile: pki.ca, clientCAFile: nil)
            Issue.record("a certificate given as the key must be refused")
        } catch {
            #expect(error.description.contains("private key"))
        }
    }
}

/// A Sendable boolean set once from a handler.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    func set() { lock.lock(); flag = true; lock.unlock() }
    var value: Bool { lock.lock(); defer { lock.unlock() }; return flag }
}
