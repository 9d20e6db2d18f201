import Foundation
import NIOSSL

/// TLS for HTTP and WebSocket from PEM files, as EG configures it: `certfile` + `keyfile`
/// (EG_CERTFILE, EG_KEYFILE) turn on HTTPS/WSS; `client_ca` (EG_CLIENT_CA) also requires
/// clients to present a certificate signed by that CA (tornado's `ssl_options`
/// `cert_reqs=CERT_REQUIRED` with `ca_certs`).
public enum TLSSettings {
    public struct LoadError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func load(certFile: String, keyFile: String, clientCAFile: String?) throws(LoadError) -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certFile)
        } catch {
            throw LoadError(description: "cannot read the certificate file \(certFile): \(error)")
        }
        guard !chain.isEmpty else { throw LoadError(description: "no certificate in \(certFile)") }
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw LoadError(description: "cannot read the private key file \(keyFile): \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                     privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        if let clientCAFile {
            let roots: [NIOSSLCertificate]
            do {
                roots = try NIOSSLCertificate.fromPEMFile(clientCAFile)
            } catch {
                throw LoadError(description: "cannot read the client CA file \(clientCAFile): \(error)")
            }
            guard !roots.isEmpty else { throw LoadError(description: "no certificate in \(clientCAFile)") }
            configuration.trustRoots = .certificates(roots)
            // Client certificates identify users, not hosts.
            configuration.certificateVerification = .noHostnameVerification
        }
        return configuration
    }
}
