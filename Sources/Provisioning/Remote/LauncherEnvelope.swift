import Crypto
import Foundation
import JupyterProtocol
import _CryptoExtras

/// The gateway half of Enterprise Gateway's kernel-launcher protocol, version 1
/// (`RemoteProcessProxy`/`ResponseManager` in EG's `processproxy.py`, `_encrypt` in
/// `etc/kernel-launchers/python/scripts/launch_ipykernel.py`).
///
/// A launcher encrypts its connection info with a fresh AES-128 key (ECB, PKCS#7), encrypts that
/// key with the gateway's RSA public key (PKCS#1 v1.5), and sends
/// `base64(JSON{"version": 1, "key": b64(rsa(aes_key)), "conn_info": b64(aes(json))})`.
/// EG generates RSA-1024; any size works for launchers (they import the key given to them), so
/// Ganymede uses 2048 bits.
///
/// `@unchecked Sendable`: `_RSA.Encryption.PrivateKey` is not marked Sendable, but it is an
/// immutable BoringSSL key whose decrypt only reads it (BoringSSL documents `RSA` as safe for
/// concurrent use once built).
public struct LauncherKeyPair: @unchecked Sendable {
    private let privateKey: _RSA.Encryption.PrivateKey
    /// `{public_key}`: base64 of the DER SubjectPublicKeyInfo, as EG passes it (PEM body without
    /// header, footer or newlines).
    public let publicKeyBase64: String

    public init() throws {
        let key = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
        self.init(privateKey: key)
    }

    init(privateKey: _RSA.Encryption.PrivateKey) {
        self.privateKey = privateKey
        self.publicKeyBase64 = privateKey.publicKey.derRepresentation.base64EncodedString()
    }

    /// Decodes one version-1 payload as received on the response socket (everything up to EOF).
    public func open(_ payload: [UInt8]) throws(LauncherPayloadError) -> LauncherConnectionInfo {
        let parsed = try LauncherPayload(payload)
        guard parsed.version == 1 else { throw .init("not a version-1 payload") }
        return try open(parsed)
    }

    func open(_ payload: LauncherPayload) throws(LauncherPayloadError) -> LauncherConnectionInfo {
        let envelope = payload.fields
        guard let keyText = envelope["key"] as? String, let wrappedKey = Data(base64Encoded: keyText),
              let infoText = envelope["conn_info"] as? String, let sealed = Data(base64Encoded: infoText)
        else { throw .init("payload lacks base64 'key' or 'conn_info'") }
        let aesKey: Data
        do {
            aesKey = try privateKey.decrypt(wrappedKey, padding: ._WEAK_AND_INSECURE_PKCS_V1_5)
        } catch {
            throw .init("the AES key does not decrypt with this gateway's RSA key (wrong public key?)")
        }
        guard aesKey.count == 16 else { throw .init("AES key is \(aesKey.count) bytes, expected 16") }
        let plain = try AESECB.decrypt(sealed, key: SymmetricKey(data: aesKey))
        return try LauncherConnectionInfo(json: plain)
    }

    /// What a launcher does (used by tests and the benchmark's in-process launcher).
    public static func seal(_ json: Data, publicKeyBase64: String) throws -> [UInt8] {
        guard let der = Data(base64Encoded: publicKeyBase64) else { throw LauncherPayloadError("public key is not base64") }
        let publicKey = try _RSA.Encryption.PublicKey(derRepresentation: der)
        let aesKey = SymmetricKey(size: .bits128)
        let wrapped = try publicKey.encrypt(aesKey.withUnsafeBytes { Data($0) }, padding: ._WEAK_AND_INSECURE_PKCS_V1_5)
        let sealed = try AESECB.encrypt(json, key: aesKey)
        let envelope = try JSONSerialization.data(withJSONObject: [
            "version": 1, "key": wrapped.base64EncodedString(), "conn_info": sealed.base64EncodedString(),
        ])
        return Array(envelope.base64EncodedString().utf8)
    }
}

/// AES-128-ECB with PKCS#7 padding, which swift-crypto does not offer as a mode: each 16-byte
/// block goes through `AES._CBC` with a zero IV and no padding, which for one block is exactly
/// the ECB block cipher; the padding is checked here.
enum AESECB {
    static let block = 16

    static func decrypt(_ data: Data, key: SymmetricKey) throws(LauncherPayloadError) -> Data {
        guard !data.isEmpty, data.count % block == 0 else {
            throw .init("conn_info is \(data.count) bytes, not a whole number of AES blocks")
        }
        var out = Data(capacity: data.count)
        do {
            let iv = try AES._CBC.IV(ivBytes: [UInt8](repeating: 0, count: block))
            var offset = data.startIndex
            while offset < data.endIndex {
                let chunk = data[offset..<(offset + block)]
                out.append(try AES._CBC.decrypt(chunk, using: key, iv: iv, noPadding: true))
                offset += block
            }
        } catch {
            throw .init("AES decryption failed: \(error)")
        }
        guard let pad = out.last, pad >= 1, Int(pad) <= block, out.suffix(Int(pad)).allSatisfy({ $0 == pad }) else {
            throw .init("conn_info has invalid PKCS#7 padding (wrong key?)")
        }
        return out.dropLast(Int(pad))
    }

    static func encrypt(_ data: Data, key: SymmetricKey) throws -> Data {
        let pad = block - data.count % block
        let padded = data + Data(repeating: UInt8(pad), count: pad)
        let iv = try AES._CBC.IV(ivBytes: [UInt8](repeating: 0, count: block))
        var out = Data(capacity: padded.count)
        var offset = padded.startIndex
        while offset < padded.endIndex {
            out.append(try AES._CBC.encrypt(padded[offset..<(offset + block)], using: key, iv: iv, noPadding: true))
            offset += block
        }
        return out
    }
}

/// The decrypted launcher payload: the kernel's connection file plus where the launcher runs.
public struct LauncherConnectionInfo: Sendable, Equatable {
    public var kernelID: String
    public var connection: ConnectionPorts
    public var pid: Int?
    public var pgid: Int?
    /// The launcher's comm socket for `{"signum": n}` and `{"shutdown": 1}`; nil if none.
    public var commPort: Int?
    /// The address the payload came from (set by the listener): where the launcher runs, as
    /// this gateway reaches it.
    public var peerIP: String?

    /// The connection file for the gateway's side, with `ip` replaced by where the kernel runs
    /// (EG overwrites it with the proxy's `assigned_ip`; launchers bind 0.0.0.0).
    public func connectionInfo(ip: String, kernelName: String) -> ConnectionInfo {
        var info = ConnectionInfo(ports: [connection.shell, connection.iopub, connection.stdin, connection.control, connection.hb],
                                  ip: ip, key: connection.key, kernelName: kernelName)
        info.transport = connection.transport
        info.signatureScheme = connection.signatureScheme
        return info
    }

    public struct ConnectionPorts: Sendable, Equatable {
        public var shell, iopub, stdin, control, hb: Int
        public var ip: String
        public var key: String
        public var transport: String
        public var signatureScheme: String
    }

    init(json: Data) throws(LauncherPayloadError) {
        guard let o = (try? JSONSerialization.jsonObject(with: json)) as? [String: Any] else {
            throw .init("decrypted conn_info is not a JSON object")
        }
        func port(_ name: String) throws(LauncherPayloadError) -> Int {
            guard let v = o[name] as? Int, (1...65535).contains(v) else { throw .init("conn_info lacks a valid \(name)") }
            return v
        }
        guard let kid = o["kernel_id"] as? String, !kid.isEmpty else { throw .init("conn_info has no kernel_id") }
        guard let key = o["key"] as? String else { throw .init("conn_info has no key") }
        kernelID = kid
        connection = ConnectionPorts(
            shell: try port("shell_port"), iopub: try port("iopub_port"), stdin: try port("stdin_port"),
            control: try port("control_port"), hb: try port("hb_port"), ip: o["ip"] as? String ?? "0.0.0.0",
            key: key, transport: o["transport"] as? String ?? "tcp",
            signatureScheme: o["signature_scheme"] as? String ?? "hmac-sha256")
        guard connection.signatureScheme == "hmac-sha256" else {
            throw .init("unsupported signature_scheme \(connection.signatureScheme)")
        }
        pid = o["pid"] as? Int
        pgid = o["pgid"] as? Int
        commPort = (o["comm_port"] as? Int).flatMap { (1...65535).contains($0) ? $0 : nil }
    }
}

/// Why a launcher payload was rejected.
public struct LauncherPayloadError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
