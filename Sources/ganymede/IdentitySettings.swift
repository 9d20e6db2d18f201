import ArgumentParser
import Foundation
import GatewayServer

/// Per-user identities from the config file (not from the environment: they are structured).
///
/// ```yaml
/// users:                      # per-user tokens, stored as SHA-256 digests:
///   alice: {token_sha256: 9f86d0...}   #   printf %s "$TOKEN" | sha256sum
/// admins: [carol]             # see and manage every kernel, /status, /metrics
/// jwt:
///   issuer: https://hub.example.org
///   audience: ganymede
///   username_claim: sub       # default
///   admin_claim: ganymede_admin
///   keys:
///     - {alg: HS256, secret_env: GANYMEDE_JWT_SECRET}     # or secret: ...
///     - {alg: RS256, public_key_file: /etc/ganymede/hub.pem, kid: hub-1}
/// ```
extension Settings {
    func applyIdentities(to c: inout GatewayConfiguration) throws {
        if let users = file["users"] {
            guard let map = users as? [String: Any] else { throw ValidationError("users: must map user names to {token_sha256: <hex>}") }
            for (name, value) in map {
                guard let entry = value as? [String: Any], let digest = entry["token_sha256"] as? String else {
                    throw ValidationError("users.\(name): needs token_sha256 (the SHA-256 hex digest of the user's token)")
                }
                let hex = digest.lowercased()
                guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
                    throw ValidationError("users.\(name).token_sha256 is not a SHA-256 hex digest (64 hex digits)")
                }
                guard !name.isEmpty, c.userTokens[hex] == nil else { throw ValidationError("users.\(name): a token digest is used twice") }
                c.userTokens[hex] = name
            }
        }
        if let admins = file["admins"] {
            if let list = admins as? [Any] { c.admins = Set(list.map { "\($0)" }) } else if let one = admins as? String { c.admins = Set(Self.list(one)) } else {
                throw ValidationError("admins: must be a list of user names")
            }
        }
        if let jwt = file["jwt"] {
            guard let map = jwt as? [String: Any], let keys = map["keys"] as? [Any], !keys.isEmpty else {
                throw ValidationError("jwt: needs keys: [{alg: HS256|RS256|ES256, ...}]")
            }
            var parsed: [JWTVerifier.Key] = []
            for (i, item) in keys.enumerated() {
                guard let k = item as? [String: Any], let algName = k["alg"] as? String,
                      let alg = JWTVerifier.Algorithm(rawValue: algName.uppercased()) else {
                    throw ValidationError("jwt.keys[\(i)]: alg must be HS256, RS256 or ES256")
                }
                let kid = k["kid"] as? String
                switch alg {
                case .hs256:
                    var secret = k["secret"] as? String
                    if let name = k["secret_env"] as? String { secret = env[name] }
                    guard let secret, secret.utf8.count >= 32 else {
                        throw ValidationError("jwt.keys[\(i)]: an HS256 secret (secret or secret_env) of at least 32 bytes is needed")
                    }
                    parsed.append(.hmac(Array(secret.utf8), kid: kid))
                case .rs256, .es256:
                    var pem = k["public_key"] as? String
                    if let file = k["public_key_file"] as? String {
                        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                            throw ValidationError("jwt.keys[\(i)]: cannot read \(file)")
                        }
                        pem = text
                    }
                    guard let pem else { throw ValidationError("jwt.keys[\(i)]: \(alg.rawValue) needs public_key or public_key_file (PEM)") }
                    do {
                        parsed.append(try .publicKey(pem: pem, algorithm: alg, kid: kid))
                    } catch {
                        throw ValidationError("jwt.keys[\(i)]: not a \(alg == .rs256 ? "RSA" : "P-256") public key in PEM: \(error)")
                    }
                }
            }
            var verifier = JWTVerifier(keys: parsed, issuer: map["issuer"] as? String, audience: map["audience"] as? String)
            if let claim = map["username_claim"] as? String { verifier.usernameClaim = claim }
            verifier.adminClaim = map["admin_claim"] as? String
            c.jwt = verifier
        }
    }
}
