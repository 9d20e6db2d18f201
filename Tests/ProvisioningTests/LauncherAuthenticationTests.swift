import Foundation
import JupyterProtocol
import Logging
import Testing
@testable import Provisioning

@Suite("Authenticated launcher mode")
struct LauncherAuthenticationTests {
    @Test func sealedConnectionInfoOpensOnlyWithItsKeyAndKernel() throws {
        let secret = LaunchSecret()
        let json = try LauncherEnvelopeTests.connJSON(kernelID: "k-9")
        let payload = try secret.sealConnectionInfo(json, kernelID: "k-9")
        let parsed = try LauncherPayload(payload)
        #expect(parsed.version == 2 && parsed.kernelID == "k-9")
        let info = try secret.openConnectionInfo(parsed, kernelID: "k-9")
        #expect(info.kernelID == "k-9" && info.connection.shell == 5001 && info.commPort == 5006)

        // Another kernel's key, or the same envelope relabelled for another kernel (the kernel
        // id is authenticated data), does not open.
        #expect(throws: LauncherPayloadError.self) { try LaunchSecret().openConnectionInfo(parsed, kernelID: "k-9") }
        #expect(throws: LauncherPayloadError.self) { try secret.openConnectionInfo(parsed, kernelID: "k-8") }

        // One flipped bit anywhere in the sealed part fails the tag.
        let sealed = try #require(Data(base64Encoded: parsed.fields["conn_info"] as! String))
        for index in [0, sealed.count / 2, sealed.count - 1] {
            var tampered = sealed
            tampered[index] ^= 0x01
            var fields = parsed.fields
            fields["conn_info"] = tampered.base64EncodedString()
            let forged = LauncherPayload(version: 2, fields: fields)
            #expect(throws: LauncherPayloadError.self) { try secret.openConnectionInfo(forged, kernelID: "k-9") }
        }
    }

    @Test func aSealedPayloadNamingAnotherKernelInsideIsRefused() throws {
        let secret = LaunchSecret()
        let payload = try secret.sealConnectionInfo(try LauncherEnvelopeTests.connJSON(kernelID: "inner"), kernelID: "outer")
        #expect(throws: LauncherPayloadError.self) { try secret.openConnectionInfo(try LauncherPayload(payload), kernelID: "outer") }
    }

    @Test func commCommandsRoundTripAndAreBoundToTheirPurpose() throws {
        let secret = LaunchSecret()
        let text = try secret.sealCommand(["signum": 2], kernelID: "k-1", now: Date(timeIntervalSince1970: 1_000))
        #expect(!text.contains("signum"))  // sealed, not readable on the wire
        let body = try secret.openCommand(text, kernelID: "k-1")
        #expect(body == ["signum": 2, "ts": 1_000_000])
        #expect(throws: LauncherPayloadError.self) { try secret.openCommand(text, kernelID: "k-2") }
        #expect(throws: LauncherPayloadError.self) { try LaunchSecret().openCommand(text, kernelID: "k-1") }
        #expect(throws: LauncherPayloadError.self) { try secret.openCommand(#"{"signum": 9}"#, kernelID: "k-1") }
        // Unauthenticated commands are what a gateway without the key sends.
        #expect(CommPort.command(["signum": 9], auth: nil) == #"{"signum": 9}"#)
        let sealed = CommPort.command(["shutdown": 1], auth: .init(secret: secret, kernelID: "k-1"))
        #expect(try secret.openCommand(sealed, kernelID: "k-1")["shutdown"] == 1)
    }

    @Test func keysSurviveTheirTextForm() throws {
        let secret = LaunchSecret()
        #expect(LaunchSecret(base64: secret.base64) == secret)
        var extra: [String: String] = [:]
        CommPort.Credentials(secret: secret, kernelID: "k-1").store(in: &extra)
        let back = try #require(CommPort.Credentials(handle: extra))
        #expect(back.secret == secret && back.kernelID == "k-1")
        #expect(CommPort.Credentials(handle: ["launch_key": secret.base64]) == nil)
        #expect(secret != LaunchSecret())
        #expect(LaunchSecret(base64: "c2hvcnQ=") == nil)
        #expect(LaunchSecret(base64: "not base64") == nil)
    }

    @Test func kernelspecDeclaration() throws {
        #expect(try LauncherAuthRequest.wanted(nil) == false)
        #expect(try LauncherAuthRequest.wanted(.object([:])) == false)
        #expect(try LauncherAuthRequest.wanted(.object(["launcher_auth": .string("AES-GCM")])) == true)
        #expect(try LauncherAuthRequest.wanted(.object(["launcher_auth": .bool(true)])) == true)
        #expect(throws: ProvisionerError.self) { try LauncherAuthRequest.wanted(.object(["launcher_auth": .string("rot13")])) }
        var required = RemoteConfiguration()
        required.launcherAuth = .required
        let ours: JSONValue = .object(["launcher_auth": .string("aes-gcm")])
        #expect(throws: ProvisionerError.self) { try required.launchSecret(config: nil, kernelName: "eg_spec") }
        #expect(try required.launchSecret(config: ours, kernelName: "ours") != nil)
        #expect(try RemoteConfiguration().launchSecret(config: nil, kernelName: "eg_spec") == nil)
        #expect(throws: ProvisionerError.self) {
            try RemoteConfiguration().launchSecret(config: .object(["launcher_auth": .string("rot13")]), kernelName: "bad")
        }
    }
}

@Suite("Response listener, authenticated mode", .serialized)
struct AuthenticatedListenerTests {
    static func start(required: Bool = false) async throws -> ResponseListener {
        let listener = try await ResponseListener.start(host: "127.0.0.1", port: 0, retries: 0, logger: Logger(label: "test"))
        await listener.setAuthenticationRequired(required)
        return listener
    }

    static func waitForRejections(_ listener: ResponseListener, _ count: Int) async throws {
        for _ in 0..<150 where await listener.rejected < count { try await Task.sleep(for: .milliseconds(20)) }
    }

    /// Whoever races the launcher with EG's envelope (whose RSA key is public), or with a key of
    /// their own, does not get their kernel adopted; the launcher holding the key does.
    @Test func onlyTheKeyHoldersPayloadIsAccepted() async throws {
        let listener = try await Self.start()
        let secret = LaunchSecret()
        await listener.register("k-a", secret: secret)
        let waiter = Task { try await listener.connectionInfo(for: "k-a") }
        let attacker = try LauncherEnvelopeTests.connJSON(kernelID: "k-a", extra: ["shell_port": 6666])
        try await ResponseListenerTests.send(try LauncherKeyPair.seal(attacker, publicKeyBase64: listener.keys.publicKeyBase64), to: listener.address)
        try await ResponseListenerTests.send(try LaunchSecret().sealConnectionInfo(attacker, kernelID: "k-a"), to: listener.address)
        try await Self.waitForRejections(listener, 2)
        #expect(await listener.rejected == 2)
        try await ResponseListenerTests.send(try secret.sealConnectionInfo(try LauncherEnvelopeTests.connJSON(kernelID: "k-a"), kernelID: "k-a"),
                                             to: listener.address)
        let info = try await waiter.value
        #expect(info.connection.shell == 5001)
        await listener.close()
    }

    @Test func aVersion2PayloadForAKernelLaunchedWithoutAKeyIsRefused() async throws {
        let listener = try await Self.start()
        await listener.register("k-b")
        try await ResponseListenerTests.send(try LaunchSecret().sealConnectionInfo(try LauncherEnvelopeTests.connJSON(kernelID: "k-b"), kernelID: "k-b"),
                                             to: listener.address)
        try await Self.waitForRejections(listener, 1)
        #expect(await listener.rejected == 1)
        await listener.close()
    }

    @Test func requiredModeRefusesEGPayloads() async throws {
        let listener = try await Self.start(required: true)
        await listener.register("k-c")
        let waiter = Task { try await listener.connectionInfo(for: "k-c") }
        try await ResponseListenerTests.send(try LauncherKeyPair.seal(try LauncherEnvelopeTests.connJSON(kernelID: "k-c"),
                                                                      publicKeyBase64: listener.keys.publicKeyBase64), to: listener.address)
        try await Self.waitForRejections(listener, 1)
        #expect(await listener.rejected == 1)
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        await listener.close()
    }
}
