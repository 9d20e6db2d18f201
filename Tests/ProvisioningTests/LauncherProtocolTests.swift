import Crypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing
@testable import Provisioning

@Suite("EG launcher envelope")
struct LauncherEnvelopeTests {
    static func connJSON(kernelID: String = "k-1", extra: [String: Any] = [:]) throws -> Data {
        var o: [String: Any] = [
            "shell_port": 5001, "iopub_port": 5002, "stdin_port": 5003, "control_port": 5004, "hb_port": 5005,
            "ip": "0.0.0.0", "key": "secret", "transport": "tcp", "signature_scheme": "hmac-sha256", "kernel_name": "",
            "pid": 42, "pgid": 42, "comm_port": 5006, "kernel_id": kernelID,
        ]
        for (k, v) in extra { o[k] = v }
        return try JSONSerialization.data(withJSONObject: o)
    }

    /// FIPS-197 / SP 800-38A F.1.1 ECB-AES128, first block.
    @Test func aesECBMatchesTheStandardVector() throws {
        let key = SymmetricKey(data: Data(hex: "2b7e151628aed2a6abf7158809cf4f3c"))
        let sealed = try AESECB.encrypt(Data(hex: "6bc1bee22e409f96e93d7e117393172a"), key: key)
        #expect(sealed.prefix(16) == Data(hex: "3ad77bb40d7a3660a89ecaf32466ef97"))
        #expect(sealed.count == 32)  // a full block of padding
        #expect(try AESECB.decrypt(sealed, key: key) == Data(hex: "6bc1bee22e409f96e93d7e117393172a"))
    }

    @Test func roundTrip() throws {
        let keys = try LauncherKeyPair()
        let payload = try LauncherKeyPair.seal(try Self.connJSON(), publicKeyBase64: keys.publicKeyBase64)
        let info = try keys.open(payload)
        #expect(info.kernelID == "k-1")
        #expect(info.connection.shell == 5001 && info.connection.hb == 5005 && info.connection.key == "secret")
        #expect(info.pid == 42 && info.commPort == 5006)
        let c = info.connectionInfo(ip: "10.0.0.7", kernelName: "x")
        #expect(c.endpoint(c.controlPort) == "tcp://10.0.0.7:5004")
    }

    @Test func anotherGatewaysKeyIsRejected() throws {
        let ours = try LauncherKeyPair()
        let theirs = try LauncherKeyPair()
        let payload = try LauncherKeyPair.seal(try Self.connJSON(), publicKeyBase64: theirs.publicKeyBase64)
        #expect(throws: LauncherPayloadError.self) { try ours.open(payload) }
    }

    @Test func malformedPayloadsAreRejected() throws {
        let keys = try LauncherKeyPair()
        let good = try LauncherKeyPair.seal(try Self.connJSON(), publicKeyBase64: keys.publicKeyBase64)
        let envelope = try #require(JSONSerialization.jsonObject(with: Data(base64Encoded: String(decoding: good, as: UTF8.self))!) as? [String: Any])
        func encode(_ o: [String: Any]) throws -> [UInt8] {
            Array(try JSONSerialization.data(withJSONObject: o).base64EncodedString().utf8)
        }
        var truncated = envelope
        truncated["conn_info"] = String((envelope["conn_info"] as! String).dropLast(8))
        var version0 = envelope
        version0["version"] = 0
        var badKey = envelope
        badKey["key"] = Data(repeating: 1, count: 256).base64EncodedString()
        let cases: [[UInt8]] = [
            [], Array("not base64 at all!".utf8), Array(Data("{}".utf8).base64EncodedString().utf8),
            Array(Data("[1,2]".utf8).base64EncodedString().utf8), try encode(truncated), try encode(version0), try encode(badKey),
            Array(good.dropLast(4)), [UInt8](repeating: 0xff, count: 300),
        ]
        for c in cases {
            #expect(throws: LauncherPayloadError.self, "\(c.prefix(40))") { try keys.open(c) }
        }
        // Decrypts, but is not connection info.
        for json in [Data("{}".utf8), try Self.connJSON(kernelID: ""), try Self.connJSON(extra: ["shell_port": 70000]),
                     try Self.connJSON(extra: ["signature_scheme": "hmac-md5"]), Data("null".utf8)] {
            let sealed = try LauncherKeyPair.seal(json, publicKeyBase64: keys.publicKeyBase64)
            #expect(throws: LauncherPayloadError.self) { try keys.open(sealed) }
        }
    }
}

@Suite("Response listener", .serialized)
struct ResponseListenerTests {
    /// One launcher-style connection: write, close. The listener may cut an oversized write short.
    static func send(_ bytes: [UInt8], to address: String, mayBeCut: Bool = false) async throws {
        let parts = address.split(separator: ":")
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: String(parts[0]), port: Int(parts[1])!).get()
        do {
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
        } catch where mayBeCut {}
        try? await channel.close()
    }

    @Test func deliversToTheWaitingLaunchAndRejectsTheRest() async throws {
        let listener = try await ResponseListener.start(host: "127.0.0.1", port: 0, retries: 0, logger: Logger(label: "test"))
        await listener.register("k-1")
        let waiter = Task { try await listener.connectionInfo(for: "k-1") }
        // Garbage, a payload for an unknown kernel, and one sealed for another key: all dropped.
        try await Self.send(Array("garbage".utf8), to: listener.address)
        try await Self.send(try LauncherKeyPair.seal(try LauncherEnvelopeTests.connJSON(kernelID: "other"),
                                                     publicKeyBase64: listener.keys.publicKeyBase64), to: listener.address)
        try await Self.send(try LauncherKeyPair.seal(try LauncherEnvelopeTests.connJSON(),
                                                     publicKeyBase64: try LauncherKeyPair().publicKeyBase64), to: listener.address)
        try await Self.send([UInt8](repeating: 65, count: ResponseListener.maxPayload + 10), to: listener.address, mayBeCut: true)
        try await Self.send(try LauncherKeyPair.seal(try LauncherEnvelopeTests.connJSON(),
                                                     publicKeyBase64: listener.keys.publicKeyBase64), to: listener.address)
        let info = try await waiter.value
        #expect(info.kernelID == "k-1")
        #expect(info.peerIP == "127.0.0.1")
        // Ordering of the dropped ones relative to the good one is not guaranteed; all four arrive.
        for _ in 0..<100 where await listener.rejected < 4 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(await listener.rejected == 4)
        await listener.close()
    }

    @Test func waitingIsCancellable() async throws {
        let listener = try await ResponseListener.start(host: "127.0.0.1", port: 0, retries: 0, logger: Logger(label: "test"))
        await listener.register("k-2")
        let waiter = Task { try await listener.connectionInfo(for: "k-2") }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        await listener.close()
    }

    @Test func aTakenPortIsRetried() async throws {
        let first = try await ResponseListener.start(host: "127.0.0.1", port: 0, retries: 0, logger: Logger(label: "test"))
        let port = Int(first.address.split(separator: ":")[1])!
        let second = try await ResponseListener.start(host: "127.0.0.1", port: port, retries: 10, logger: Logger(label: "test"))
        #expect(second.address != first.address)
        await first.close()
        await second.close()
    }
}

@Suite("Remote command line")
struct RemoteCommandTests {
    /// Every hostile value reaches the shell's command as exactly itself.
    @Test func quotingSurvivesTheShell() async throws {
        let values = ["plain", "", "with space", "it's", #"double "quotes""#, "$(touch /tmp/pwned)", "`id`", "a;b&&c|d",
                      "new\nline", "back\\slash", "*", "~", "-n", "ünïcödé", "'\\''"]
        for v in values {
            let r = try await ShortCommand.run(["sh", "-c", "printf %s " + RemoteCommand.quote(v)])
            #expect(r.output == v, "\(v)")
        }
    }

    @Test func hostLocalNamesStayHome() {
        let env = RemoteCommand.environment(["PATH": "/x", "HOME": "/root", "JPY_PARENT_PID": "1", "KERNEL_ID": "k",
                                             "EG_AUTH_TOKEN": "t", "SSH_AUTH_SOCK": "/s", "LANG": "C"])
        #expect(env.map(\.0) == ["KERNEL_ID", "LANG", "PATH"])
    }

    @Test func shellLineRecordsThePidAndExecs() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rc-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let line = RemoteCommand.shellLine(argv: ["sh", "-c", "echo \"$KERNEL_X|$$\""], environment: [("KERNEL_X", "a 'b' $c")],
                                           logDirectory: dir, kernelID: "k9")
        let r = try await ShortCommand.run(["sh", "-c", line])
        #expect(r.succeeded)
        let out = try String(contentsOfFile: dir + "/kernel-k9.log", encoding: .utf8)
        let pid = try String(contentsOfFile: dir + "/kernel-k9.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(out == "a 'b' $c|\(pid)\n")
    }
}

extension Data {
    init(hex: String) {
        var bytes: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            bytes.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        self.init(bytes)
    }
}
