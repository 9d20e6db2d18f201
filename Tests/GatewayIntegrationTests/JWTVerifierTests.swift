import Crypto
import _CryptoExtras
import Foundation
@testable import GatewayServer
import Testing

/// JWT verification without a server: RFC 7515's HS256 example, RS256 and ES256 with keys made
/// here, and the tokens that must be refused.
@Suite struct JWTVerifierTests {
    static func b64url(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func token(header: String, claims: String, sign: ([UInt8]) -> [UInt8]) -> String {
        let input = b64url(Array(header.utf8)) + "." + b64url(Array(claims.utf8))
        return input + "." + b64url(sign(Array(input.utf8)))
    }

    /// RFC 7515 appendix A.1: the key, the token and its claims (exp 1300819380).
    static let rfcKey = JWTVerifier.base64URL("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")!
    static let rfcToken = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
        + ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
        + ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

    @Test func rfc7515HS256Vector() throws {
        var v = JWTVerifier(keys: [.hmac(Self.rfcKey)], issuer: "joe")
        v.usernameClaim = "iss"
        v.adminClaim = "http://example.com/is_root"
        let before = Date(timeIntervalSince1970: 1_300_819_000)
        let r = try v.verify(Self.rfcToken, now: before)
        #expect(r.user == "joe" && r.admin)
        #expect(throws: JWTVerifier.JWTError.self) { try v.verify(Self.rfcToken, now: Date(timeIntervalSince1970: 1_300_819_380 + 31)) }
        var tampered = Self.rfcToken
        tampered.removeLast()
        tampered += "Y"
        #expect(throws: JWTVerifier.JWTError.self) { try v.verify(tampered, now: before) }
        let otherKey = JWTVerifier(keys: [.hmac(Array("another secret that is long enough!!".utf8))], issuer: "joe")
        #expect(throws: JWTVerifier.JWTError.self) { try otherKey.verify(Self.rfcToken, now: before) }
    }

    @Test func rs256AndAlgorithmPinning() throws {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let v = JWTVerifier(keys: [try .publicKey(pem: key.publicKey.pemRepresentation, algorithm: .rs256)], audience: "ganymede")
        let good = Self.token(header: #"{"alg":"RS256","typ":"JWT"}"#, claims: #"{"sub":"alice","aud":["x","ganymede"],"exp":4102444800}"#) {
            Array(try! key.signature(for: SHA256.hash(data: $0), padding: .insecurePKCS1v1_5).rawRepresentation)
        }
        #expect(try v.verify(good).user == "alice")
        let wrongAud = Self.token(header: #"{"alg":"RS256"}"#, claims: #"{"sub":"alice","aud":"other"}"#) {
            Array(try! key.signature(for: SHA256.hash(data: $0), padding: .insecurePKCS1v1_5).rawRepresentation)
        }
        #expect(throws: JWTVerifier.JWTError.self) { try v.verify(wrongAud) }
        // alg=none, and HS256 "signed" with the public key's PEM (algorithm confusion).
        let none = Self.b64url(Array(#"{"alg":"none"}"#.utf8)) + "." + Self.b64url(Array(#"{"sub":"mallory","aud":"ganymede"}"#.utf8)) + "."
        #expect(throws: JWTVerifier.JWTError.self) { try v.verify(none) }
        let confused = Self.token(header: #"{"alg":"HS256"}"#, claims: #"{"sub":"mallory","aud":"ganymede"}"#) {
            Array(HMAC<SHA256>.authenticationCode(for: $0, using: SymmetricKey(data: Array(key.publicKey.pemRepresentation.utf8))))
        }
        #expect(throws: JWTVerifier.JWTError.self) { try v.verify(confused) }
    }

    @Test func es256KidAndNotBefore() throws {
        let key = P256.Signing.PrivateKey()
        let v = JWTVerifier(keys: [try .publicKey(pem: key.publicKey.pemRepresentation, algorithm: .es256, kid: "k1")])
        let sign: ([UInt8]) -> [UInt8] = { Array(try! key.signature(for: $0).rawRepresentation) }
        #expect(try v.verify(Self.token(header: #"{"alg":"ES256","kid":"k1"}"#, claims: #"{"sub":"bob"}"#, sign: sign)).user == "bob")
        #expect(throws: JWTVerifier.JWTError.self) {
            try v.verify(Self.token(header: #"{"alg":"ES256","kid":"k2"}"#, claims: #"{"sub":"bob"}"#, sign: sign))
        }
        #expect(throws: JWTVerifier.JWTError.self) {
            try v.verify(Self.token(header: #"{"alg":"ES256","kid":"k1"}"#, claims: #"{"sub":"bob","nbf":4102444800}"#, sign: sign))
        }
        #expect(throws: JWTVerifier.JWTError.self) {
            try v.verify(Self.token(header: #"{"alg":"ES256","kid":"k1"}"#, claims: #"{"name":"bob"}"#, sign: sign))  // no sub
        }
    }

    @Test func garbageIsRefused() {
        let v = JWTVerifier(keys: [.hmac(Self.rfcKey)])
        for t in ["", "a.b", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30.=="] {
            #expect(throws: JWTVerifier.JWTError.self) { try v.verify(t) }
        }
    }
}
