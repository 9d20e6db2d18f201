import Crypto
import _CryptoExtras
import Foundation

/// Verifies JWT bearer tokens (RFC 7519, compact JWS of RFC 7515) issued by something the
/// operator trusts (JupyterHub, an SSO proxy), so that the gateway knows who a request is from.
///
/// Each configured key pins its algorithm (HS256, RS256 or ES256): a token's `alg` must be that
/// of a configured key (and its `kid`, when the key has one), so `none` and algorithm
/// confusion (an RSA public key used as an HMAC secret) are refused. `exp` and `nbf` are
/// checked with a small leeway; `iss` and `aud` when configured.
public struct JWTVerifier: Sendable {
    public enum Algorithm: String, Sendable { case hs256 = "HS256", rs256 = "RS256", es256 = "ES256" }

    public struct Key: Sendable {
        enum Material: Sendable {
            case hmac(SymmetricKey)
            case rsa(_RSA.Signing.PublicKey)
            case p256(P256.Signing.PublicKey)
        }
        let algorithm: Algorithm
        let kid: String?
        let material: Material

        public static func hmac(_ secret: [UInt8], kid: String? = nil) -> Key {
            Key(algorithm: .hs256, kid: kid, material: .hmac(SymmetricKey(data: secret)))
        }

        /// A PEM public key: RSA for RS256, P-256 for ES256.
        public static func publicKey(pem: String, algorithm: Algorithm, kid: String? = nil) throws -> Key {
            switch algorithm {
            case .rs256: return Key(algorithm: .rs256, kid: kid, material: .rsa(try _RSA.Signing.PublicKey(pemRepresentation: pem)))
            case .es256: return Key(algorithm: .es256, kid: kid, material: .p256(try P256.Signing.PublicKey(pemRepresentation: pem)))
            case .hs256: throw JWTError("HS256 takes a secret, not a public key")
            }
        }
    }

    public struct JWTError: Error, CustomStringConvertible, Sendable {
        public var description: String
        init(_ d: String) { description = d }
    }

    public var keys: [Key]
    public var issuer: String?
    public var audience: String?
    /// The claim naming the user (`sub` by default; JupyterHub tokens often use `name`).
    public var usernameClaim = "sub"
    /// A claim that, when `true` (or a list containing "admin"), makes the user an admin.
    public var adminClaim: String?
    public var leeway: TimeInterval = 30

    public init(keys: [Key], issuer: String? = nil, audience: String? = nil) {
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
    }

    /// The verified claims' user and whether the admin claim is set.
    public func verify(_ token: String, now: Date = Date()) throws(JWTError) -> (user: String, admin: Bool) {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Self.base64URL(parts[0]), let payloadData = Self.base64URL(parts[1]),
              let signature = Self.base64URL(parts[2]) else { throw JWTError("not a compact JWS") }
        guard let header = try? JSONSerialization.jsonObject(with: Data(headerData)) as? [String: Any],
              let alg = header["alg"] as? String else { throw JWTError("header without alg") }
        guard let algorithm = Algorithm(rawValue: alg) else { throw JWTError("algorithm \(alg.prefix(16)) is not accepted") }
        let kid = header["kid"] as? String
        let candidates = keys.filter { $0.algorithm == algorithm && ($0.kid == nil || $0.kid == kid) }
        guard !candidates.isEmpty else { throw JWTError("no configured key for \(alg)\(kid.map { " kid \($0.prefix(32))" } ?? "")") }
        let signed = Array((parts[0] + "." + parts[1]).utf8)
        guard candidates.contains(where: { Self.valid(signature, over: signed, with: $0) }) else { throw JWTError("bad signature") }
        guard let claims = try? JSONSerialization.jsonObject(with: Data(payloadData)) as? [String: Any] else { throw JWTError("payload is not a JSON object") }
        let t = now.timeIntervalSince1970
        if let exp = (claims["exp"] as? NSNumber)?.doubleValue, t > exp + leeway { throw JWTError("expired") }
        if claims["exp"] != nil, !(claims["exp"] is NSNumber) { throw JWTError("exp is not a number") }
        if let nbf = (claims["nbf"] as? NSNumber)?.doubleValue, t + leeway < nbf { throw JWTError("not valid yet") }
        if let issuer, claims["iss"] as? String != issuer { throw JWTError("wrong issuer") }
        if let audience {
            let aud = claims["aud"]
            let ok = (aud as? String) == audience || ((aud as? [Any])?.contains { ($0 as? String) == audience } ?? false)
            guard ok else { throw JWTError("wrong audience") }
        }
        guard let user = claims[usernameClaim] as? String, !user.isEmpty, user.utf8.count <= 256,
              !user.unicodeScalars.contains(where: { CharacterSet.controlCharacters.contains($0) }) else {
            throw JWTError("no usable '\(usernameClaim)' claim")
        }
        var admin = false
        if let adminClaim {
            let v = claims[adminClaim]
            admin = (v as? Bool) == true || ((v as? [Any])?.contains { ($0 as? String) == "admin" } ?? false)
        }
        return (user, admin)
    }

    static func valid(_ signature: [UInt8], over data: [UInt8], with key: Key) -> Bool {
        switch key.material {
        case .hmac(let secret):
            return HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: data, using: secret)
        case .rsa(let publicKey):
            return publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: data),
                                              padding: .insecurePKCS1v1_5)
        case .p256(let publicKey):
            guard let sig = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return publicKey.isValidSignature(sig, for: data)
        }
    }

    static func base64URL(_ s: Substring) -> [UInt8]? {
        var b = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !b.contains("=") else { return nil }
        while b.count % 4 != 0 { b += "=" }
        return Data(base64Encoded: b).map { Array($0) }
    }
}
