import Foundation
import NIOCore
import NIOPosix

/// Requests to a launcher's comm socket (EG `RemoteProcessProxy._send_listener_request`):
/// one TCP connection per request carrying one unencrypted JSON object, then close.
/// `{"signum": n}` makes the launcher signal its kernel (0 = liveness), `{"shutdown": 1}` stops
/// the listener.
public enum CommPort {
    /// Sends `json`; false when the port cannot be reached (EG counts ECONNREFUSED as "gone").
    public static func send(_ json: String, host: String, port: Int, timeout: Duration = .seconds(2)) async -> Bool {
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(Int64(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)))
        do {
            let channel = try await bootstrap.connect(host: host, port: port).get()
            try await channel.writeAndFlush(ByteBuffer(string: json))
            try? await channel.close()
            return true
        } catch {
            return false
        }
    }

    /// With `auth`, the command is sealed with the kernel's launch key (`LaunchSecret`), which
    /// a launcher in the authenticated mode requires.
    public static func signal(_ signum: Int32, host: String, port: Int, auth: Credentials? = nil) async -> Bool {
        await send(command(["signum": Int(signum)], auth: auth), host: host, port: port)
    }

    public static func shutdown(host: String, port: Int, auth: Credentials? = nil) async -> Bool {
        await send(command(["shutdown": 1], auth: auth), host: host, port: port)
    }

    static func command(_ body: [String: Int], auth: Credentials?) -> String {
        if let auth, let sealed = try? auth.secret.sealCommand(body, kernelID: auth.kernelID) { return sealed }
        let (k, v) = body.first!
        return #"{"\#(k)": \#(v)}"#
    }

    /// The launch key of a kernel started in the authenticated mode, and its id.
    public struct Credentials: Sendable {
        public var secret: LaunchSecret
        public var kernelID: String
        public init(secret: LaunchSecret, kernelID: String) {
            self.secret = secret
            self.kernelID = kernelID
        }

        /// From a persisted handle's fields (`KernelHandle.extra`), for a re-attached kernel.
        init?(handle extra: [String: String]) {
            guard let secret = extra["launch_key"].flatMap(LaunchSecret.init(base64:)), let kernelID = extra["kernel_id"] else { return nil }
            self.init(secret: secret, kernelID: kernelID)
        }

        /// Into a persisted handle's fields (the session file is private to the gateway user).
        func store(in extra: inout [String: String]) {
            extra["launch_key"] = secret.base64
            extra["kernel_id"] = kernelID
        }
    }
}
