import Crypto
import Foundation
import JupyterProtocol

/// Ganymede's authenticated launcher mode, beside Enterprise Gateway's version-1 envelope.
///
/// EG's envelope (`LauncherKeyPair`) only keeps the connection info secret: the RSA key it is
/// sealed with is public (it is on the launcher's command line), so anyone who can reach the
/// response port and knows a starting kernel's id (ids are in every URL) can hand the gateway a
/// kernel of their own; and the comm port obeys any `{"signum": 9}` sent to it. In this mode the
/// gateway makes a fresh 256-bit key per launch and gives it to the launcher on its standard
/// input (never in argv or the environment, so `ps` on either host does not show it):
///
/// - connection info: `base64(JSON{"version": 2, "kernel_id": id, "nonce": b64(12 bytes),
///   "conn_info": b64(AES-256-GCM(json) || tag)})`, additional data `ganymede-launcher-v2:<id>`;
/// - comm-port commands: `JSON{"version": 2, "nonce": ..., "sealed": b64(AES-256-GCM(json) || tag)}`,
///   additional data `ganymede-comm-v2:<id>`, the sealed JSON carrying `ts` (milliseconds since
///   1970) so the launcher refuses a replayed command (`ts` must grow and be within 5 minutes of
///   its clock).
///
/// A kernelspec opts in with `metadata.process_proxy.config.launcher_auth: "aes-gcm"`; its
/// launcher reads the key with `--launch-key-stdin` (kernelspecs/remote/*/scripts/launch_ipykernel.py).
public struct LaunchSecret: Sendable, Equatable {
    public let bytes: [UInt8]

    public init() {
        bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }

    public init?(base64: String) {
        guard let data = Data(base64Encoded: base64), data.count == 32 else { return nil }
        bytes = Array(data)
    }

    /// What the launcher reads on its standard input (one line).
    public var base64: String { Data(bytes).base64EncodedString() }

    private var key: SymmetricKey { SymmetricKey(data: bytes) }

    static func connectionContext(_ kernelID: String) -> Data { Data("ganymede-launcher-v2:\(kernelID)".utf8) }
    static func commContext(_ kernelID: String) -> Data { Data("ganymede-comm-v2:\(kernelID)".utf8) }

    func seal(_ plaintext: Data, context: Data) throws -> (nonce: Data, sealed: Data) {
        let box = try AES.GCM.seal(plaintext, using: key, nonce: AES.GCM.Nonce(), authenticating: context)
        return (Data(box.nonce), box.ciphertext + box.tag)
    }

    func open(nonce: Data, sealed: Data, context: Data) throws(LauncherPayloadError) -> Data {
        guard sealed.count >= 16 else { throw .init("sealed data is \(sealed.count) bytes, shorter than its tag") }
        do {
            let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: nonce), ciphertext: sealed.dropLast(16), tag: sealed.suffix(16))
            return try AES.GCM.open(box, using: key, authenticating: context)
        } catch {
            throw .init("authentication failed (not sealed with this kernel's launch key)")
        }
    }

    /// Opens a version-2 envelope for `kernelID` (what `LauncherPayload` parsed).
    func openConnectionInfo(_ payload: LauncherPayload, kernelID: String) throws(LauncherPayloadError) -> LauncherConnectionInfo {
        guard let nonceText = payload.fields["nonce"] as? String, let nonce = Data(base64Encoded: nonceText), nonce.count == 12,
              let infoText = payload.fields["conn_info"] as? String, let sealed = Data(base64Encoded: infoText)
        else { throw .init("version-2 payload lacks a base64 12-byte 'nonce' or 'conn_info'") }
        let plain = try open(nonce: nonce, sealed: sealed, context: Self.connectionContext(kernelID))
        let info = try LauncherConnectionInfo(json: plain)
        guard info.kernelID == kernelID else { throw .init("sealed kernel_id \(info.kernelID) differs from the envelope's \(kernelID)") }
        return info
    }

    /// What Ganymede's launcher does (tests use it as the launcher's twin).
    public func sealConnectionInfo(_ json: Data, kernelID: String) throws -> [UInt8] {
        let (nonce, sealed) = try seal(json, context: Self.connectionContext(kernelID))
        let envelope = try JSONSerialization.data(withJSONObject: [
            "version": 2, "kernel_id": kernelID, "nonce": nonce.base64EncodedString(), "conn_info": sealed.base64EncodedString(),
        ] as [String: Any])
        return Array(envelope.base64EncodedString().utf8)
    }

    /// A comm-port command for `kernelID`'s launcher, stamped with the current time.
    public func sealCommand(_ command: [String: Int], kernelID: String, now: Date = Date()) throws -> String {
        var body = command
        body["ts"] = Int(now.timeIntervalSince1970 * 1000)
        let plain = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
        let (nonce, sealed) = try seal(plain, context: Self.commContext(kernelID))
        let outer = try JSONSerialization.data(withJSONObject: [
            "version": 2, "nonce": nonce.base64EncodedString(), "sealed": sealed.base64EncodedString(),
        ] as [String: Any], options: [.sortedKeys])
        return String(decoding: outer, as: UTF8.self)
    }

    /// The launcher's side of `sealCommand` (tests).
    public func openCommand(_ text: String, kernelID: String) throws(LauncherPayloadError) -> [String: Int] {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any], o["version"] as? Int == 2,
              let nonce = (o["nonce"] as? String).flatMap({ Data(base64Encoded: $0) }),
              let sealed = (o["sealed"] as? String).flatMap({ Data(base64Encoded: $0) })
        else { throw .init("not a version-2 comm command") }
        let plain = try open(nonce: nonce, sealed: sealed, context: Self.commContext(kernelID))
        guard let body = (try? JSONSerialization.jsonObject(with: plain)) as? [String: Int] else { throw .init("sealed command is not a JSON object of integers") }
        return body
    }
}

/// `GANYMEDE_LAUNCHER_AUTH` (config `launcher_auth`): whether launchers that speak only EG's version-1 envelope are accepted.
public enum LauncherAuthMode: String, Sendable, CaseIterable {
    /// Kernelspecs that declare `launcher_auth` get the authenticated mode; others use EG's v1.
    case optional
    /// Every remote kernelspec must declare `launcher_auth`; v1 payloads are refused.
    case required
}

/// What a kernelspec asks for in `metadata.process_proxy.config.launcher_auth`.
public enum LauncherAuthRequest {
    public static let key = "launcher_auth"
    public static let scheme = "aes-gcm"

    /// True for `"aes-gcm"` (or `true`); false when absent. Another value is a kernelspec error.
    public static func wanted(_ config: JSONValue?) throws(ProvisionerError) -> Bool {
        switch config?[key] {
        case nil, .null?, .bool(false)?: return false
        case .bool(true)?: return true
        case .string(let s)? where s.lowercased() == scheme: return true
        case let other?: throw ProvisionerError("launcher_auth in the kernelspec must be \"\(scheme)\", not \(other)")
        }
    }
}

/// What the response listener does with the bytes a launcher sent: picks the envelope by its
/// version and opens it with the key the launch expects. `expected(kernelID)` is nil for a
/// kernel that is not starting, `.some(nil)` for one launched with EG's envelope and
/// `.some(secret)` for one launched in the authenticated mode.
public enum LauncherPayloadDecoder {
    public static func decode(_ bytes: [UInt8], keys: LauncherKeyPair, requireAuthentication: Bool,
                              expected: (String) -> LaunchSecret??) throws(LauncherPayloadError) -> LauncherConnectionInfo {
        let payload = try LauncherPayload(bytes)
        if payload.version == 2 {
            guard let kernelID = payload.kernelID else { throw .init("version-2 payload names no kernel_id") }
            guard let launch = expected(kernelID) else { throw .init("payload for kernel \(kernelID), which is not starting") }
            guard let secret = launch else {
                throw .init("version-2 payload for kernel \(kernelID), whose kernelspec does not declare launcher_auth")
            }
            return try secret.openConnectionInfo(payload, kernelID: kernelID)
        }
        if requireAuthentication {
            throw .init("unauthenticated (EG version-1) payload refused: this gateway runs with GANYMEDE_LAUNCHER_AUTH=required")
        }
        let info = try keys.open(payload)
        guard let launch = expected(info.kernelID) else { throw .init("payload for kernel \(info.kernelID), which is not starting") }
        if launch != nil {
            throw .init("unauthenticated (EG version-1) payload for kernel \(info.kernelID), which was launched in the authenticated mode")
        }
        return info
    }
}

/// A launcher payload's outer layer: base64 of a JSON object with a `version`.
struct LauncherPayload {
    var version: Int
    var fields: [String: Any]

    init(version: Int, fields: [String: Any]) {
        self.version = version
        self.fields = fields
    }

    init(_ payload: [UInt8]) throws(LauncherPayloadError) {
        let text = String(decoding: payload, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let outer = Data(base64Encoded: text) else { throw .init("payload is not base64") }
        guard let envelope = (try? JSONSerialization.jsonObject(with: outer)) as? [String: Any] else {
            throw .init("payload is not a JSON object (legacy version-0 payloads are not accepted)")
        }
        guard let version = envelope["version"] as? Int, version == 1 || version == 2 else {
            throw .init("unsupported launcher payload version \(String(describing: envelope["version"]))")
        }
        self.version = version
        self.fields = envelope
    }

    /// The envelope's clear-text kernel id (version 2 only; it selects the key).
    var kernelID: String? { fields["kernel_id"] as? String }
}
