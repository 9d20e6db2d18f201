import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Picks free TCP ports for kernels.
///
/// Like jupyter_client's `LocalProvisioner`, a port is found by binding port 0 and closing
/// it; the kernel binds it moments later. Ports handed out recently are remembered so that
/// concurrent starts in this process never get the same port.
public final class PortAllocator: Sendable {
    public static let shared = PortAllocator()

    private let recent = Mutex<(set: Set<Int>, order: [Int])>((set: [], order: []))
    private let memory = 4096

    /// Where kernel ports are picked: below Linux's ephemeral range (32768-60999), so the
    /// source port of some outgoing connection (the gateway's own ZeroMQ connects among them)
    /// cannot take a port between our check and the kernel's bind, as it could with port 0.
    let range: ClosedRange<Int>

    public init(range: ClosedRange<Int> = 20_000...32_767) {
        self.range = range
    }

    public func allocate(count: Int, host: String = "127.0.0.1") throws -> [Int] {
        var ports: [Int] = []
        var attempts = 0
        while ports.count < count {
            attempts += 1
            guard attempts < count * 200 else { throw ProvisionerError("no free TCP port found on \(host)") }
            let port = try Self.freePort(host: host, in: range)
            let fresh = recent.withLock { state -> Bool in
                guard !state.set.contains(port) else { return false }
                state.set.insert(port)
                state.order.append(port)
                if state.order.count > memory {
                    let old = state.order.removeFirst()
                    state.set.remove(old)
                }
                return true
            }
            if fresh && !ports.contains(port) { ports.append(port) }
        }
        return ports
    }

    /// A port of `range` that binds now; port 0 (any ephemeral port) if none is found quickly.
    static func freePort(host: String, in range: ClosedRange<Int>) throws -> Int {
        for _ in 0..<64 {
            let candidate = Int.random(in: range)
            if canBind(host: host, port: candidate) { return candidate }
        }
        return try freePort(host: host)
    }

    static func canBind(host: String, port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &addr.sin_addr)
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    static func freePort(host: String) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ProvisionerError("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        inet_pton(AF_INET, host, &addr.sin_addr)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw ProvisionerError("bind() failed: errno \(errno)") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
