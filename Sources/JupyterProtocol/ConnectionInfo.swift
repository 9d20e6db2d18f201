import Foundation

/// A kernel's connection file (jupyter_client `docs/kernels.rst`, "Connection files").
public struct ConnectionInfo: Codable, Sendable, Equatable {
    public var shellPort: Int
    public var iopubPort: Int
    public var stdinPort: Int
    public var controlPort: Int
    public var hbPort: Int
    public var ip: String
    public var transport: String
    public var signatureScheme: String
    public var key: String
    public var kernelName: String?

    enum CodingKeys: String, CodingKey {
        case shellPort = "shell_port", iopubPort = "iopub_port", stdinPort = "stdin_port"
        case controlPort = "control_port", hbPort = "hb_port", ip, transport
        case signatureScheme = "signature_scheme", key, kernelName = "kernel_name"
    }

    public init(ports: [Int], ip: String = "127.0.0.1", key: String, kernelName: String? = nil) {
        precondition(ports.count == 5)
        self.shellPort = ports[0]
        self.iopubPort = ports[1]
        self.stdinPort = ports[2]
        self.controlPort = ports[3]
        self.hbPort = ports[4]
        self.ip = ip
        self.transport = "tcp"
        self.signatureScheme = "hmac-sha256"
        self.key = key
        self.kernelName = kernelName
    }

    /// The ZeroMQ endpoint of a port (`tcp://ip:port`, or jupyter_client's `ipc://ip-port`).
    public func endpoint(_ port: Int) -> String {
        transport == "ipc" ? "ipc://\(ip)-\(port)" : "tcp://\(formattedIP):\(port)"
    }

    var formattedIP: String { ip.contains(":") && !ip.hasPrefix("[") ? "[\(ip)]" : ip }

    public func port(for channel: Channel) -> Int {
        switch channel {
        case .shell: shellPort
        case .iopub: iopubPort
        case .stdin: stdinPort
        case .control: controlPort
        }
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try encoder.encode(self)
    }
}
