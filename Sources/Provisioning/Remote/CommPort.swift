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

    public static func signal(_ signum: Int32, host: String, port: Int) async -> Bool {
        await send(#"{"signum": \#(signum)}"#, host: host, port: port)
    }

    public static func shutdown(host: String, port: Int) async -> Bool {
        await send(#"{"shutdown": 1}"#, host: host, port: port)
    }
}
