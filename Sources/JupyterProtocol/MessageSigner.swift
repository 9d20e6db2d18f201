import Crypto

/// HMAC signing of messages as jupyter_client's `Session` does it.
///
/// Messaging spec "The Wire Protocol": the signature is the hex HMAC (`signature_scheme`,
/// normally `hmac-sha256`, keyed by the connection file's `key`) over header,
/// parent_header, metadata and content, in that order; buffers are not signed.
/// An empty key disables signing and the signature part is empty.
public struct MessageSigner: @unchecked Sendable {
    private let key: SymmetricKey?
    /// The HMAC state right after keying: copied per message, so the key pads are derived once
    /// per kernel rather than once per message. A value type with no shared mutable state,
    /// hence safe to send (swift-crypto does not mark it Sendable).
    private let keyed: HMAC<SHA256>?

    public init(key: String, scheme: String = "hmac-sha256") {
        if key.isEmpty {
            self.key = nil
            self.keyed = nil
        } else {
            let k = SymmetricKey(data: Array(key.utf8))
            self.key = k
            self.keyed = HMAC<SHA256>(key: k)
        }
        // Only hmac-sha256 is in use by any kernel we know of; the scheme is validated
        // when connection info is parsed.
        _ = scheme
    }

    public var isSigning: Bool { key != nil }

    /// The hex signature over the four JSON parts.
    public func signature(_ header: [UInt8], _ parent: [UInt8], _ metadata: [UInt8], _ content: [UInt8]) -> [UInt8] {
        guard let keyed else { return [] }
        return Self.hex(Array(Self.mac(keyed, header, parent, metadata, content)))
    }

    private static func mac(
        _ keyed: HMAC<SHA256>, _ header: [UInt8], _ parent: [UInt8], _ metadata: [UInt8], _ content: [UInt8]
    ) -> HMAC<SHA256>.MAC {
        var mac = keyed
        mac.update(data: header)
        mac.update(data: parent)
        mac.update(data: metadata)
        mac.update(data: content)
        return mac.finalize()
    }

    /// Constant-time check of a received signature.
    public func verify(
        _ signature: [UInt8], _ header: [UInt8], _ parent: [UInt8], _ metadata: [UInt8], _ content: [UInt8]
    ) -> Bool {
        guard let keyed else { return true }
        guard signature.count == 64, let raw = Self.unhex(signature) else { return false }
        // HashedAuthenticationCode's == is constant-time.
        return Self.mac(keyed, header, parent, metadata, content) == raw
    }

    static let hexDigits = Array("0123456789abcdef".utf8)

    static func hex(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 0x0F)])
        }
        return out
    }

    static func unhex(_ hex: [UInt8]) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(hex.count / 2)
        var i = 0
        while i + 1 < hex.count {
            guard let hi = nibble(hex[i]), let lo = nibble(hex[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
