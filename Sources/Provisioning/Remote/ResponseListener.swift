import Foundation
import Logging
import NIOCore
import NIOPosix

/// The one TCP listener on which kernel launchers return their connection info
/// (EG's `ResponseManager`: `EG_RESPONSE_IP`, `EG_RESPONSE_PORT`, `EG_RESPONSE_PORT_RETRIES`).
///
/// A launcher connects, writes one payload and closes; the payload is read to EOF (at most
/// 64 KiB, within 10 s), decrypted and handed to the launch waiting for that kernel id. EG drains
/// its socket from a 0.1 ms periodic callback and its launches poll every 0.5 s; here the launch
/// awaits a continuation that the read resumes. Payloads that do not decrypt, or name a kernel
/// that is not being launched, are dropped and logged.
public actor ResponseListener {
    public nonisolated let keys: LauncherKeyPair
    /// `{response_address}`: `ip:port` as launchers connect to it.
    public nonisolated let address: String
    private let channel: any Channel
    private let logger: Logger
    private var waiting: [String: CheckedContinuation<LauncherConnectionInfo, any Error>] = [:]
    /// Kernels being launched, with the launch key of those in the authenticated mode.
    private var registered: [String: LaunchSecret?] = [:]
    private var arrived: [String: LauncherConnectionInfo] = [:]
    public private(set) var rejected = 0
    /// `GANYMEDE_LAUNCHER_AUTH=required`: version-1 payloads are refused.
    private var requireAuthentication = false

    static let maxPayload = 64 * 1024

    private init(keys: LauncherKeyPair, address: String, channel: any Channel, logger: Logger) {
        self.keys = keys
        self.address = address
        self.channel = channel
        self.logger = logger
    }

    /// Binds `host:port`; if that port is taken, tries `retries` random ports above it (EG tries
    /// random ports too). Port 0 takes any free port.
    public static func start(host: String, port: Int, retries: Int, logger: Logger) async throws -> ResponseListener {
        let keys = try LauncherKeyPair()
        let box = ListenerBox()
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 128)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(PayloadReader(box: box, logger: logger))
                }
            }
        var candidates = [port]
        if port != 0 {
            for _ in 0..<max(0, retries) { candidates.append(Int.random(in: (port + 1)...min(65535, port + 1000))) }
        }
        var lastError: (any Error)?
        for candidate in candidates {
            do {
                let channel = try await bootstrap.bind(host: host, port: candidate).get()
                let bound = channel.localAddress?.port ?? candidate
                let listener = ResponseListener(keys: keys, address: "\(host):\(bound)", channel: channel, logger: logger)
                box.listener = listener
                logger.info("launcher response listener started", metadata: ["address": "\(host):\(bound)"])
                return listener
            } catch {
                lastError = error
            }
        }
        throw ProvisionerError("cannot bind the launcher response listener on \(host):\(port) (tried \(candidates.count) ports): \(lastError.map { "\($0)" } ?? "")")
    }

    public func setAuthenticationRequired(_ required: Bool) {
        requireAuthentication = required
    }

    /// Announces a launch, so a payload for `kernelID` is accepted from now on. With a secret,
    /// only a version-2 payload sealed with it is: a kernel launched in the authenticated mode
    /// cannot be downgraded to EG's envelope by whoever races its launcher.
    public func register(_ kernelID: String, secret: LaunchSecret? = nil) {
        registered[kernelID] = .some(secret)
        arrived[kernelID] = nil
    }

    public func unregister(_ kernelID: String) {
        registered.removeValue(forKey: kernelID)
        arrived[kernelID] = nil
        waiting.removeValue(forKey: kernelID)?.resume(throwing: CancellationError())
    }

    /// Waits for the payload of a registered kernel. Cancelling the calling task ends the wait.
    public func connectionInfo(for kernelID: String) async throws -> LauncherConnectionInfo {
        if let info = arrived.removeValue(forKey: kernelID) { return info }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if let info = arrived.removeValue(forKey: kernelID) {
                    continuation.resume(returning: info)
                } else if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    waiting[kernelID]?.resume(throwing: CancellationError())
                    waiting[kernelID] = continuation
                }
            }
        } onCancel: {
            Task { await self.cancelWait(kernelID) }
        }
    }

    private func cancelWait(_ kernelID: String) {
        waiting.removeValue(forKey: kernelID)?.resume(throwing: CancellationError())
    }

    fileprivate func received(_ bytes: [UInt8], from peer: String, peerIP: String?) {
        var info: LauncherConnectionInfo
        do {
            info = try open(bytes)
            info.peerIP = peerIP
        } catch {
            rejected += 1
            logger.warning("rejected launcher payload", metadata: ["peer": "\(peer)", "error": "\(error)", "bytes": "\(bytes.count)"])
            return
        }
        logger.debug("launcher payload received", metadata: ["kernel_id": "\(info.kernelID)", "peer": "\(peer)"])
        if let waiter = waiting.removeValue(forKey: info.kernelID) {
            waiter.resume(returning: info)
        } else {
            arrived[info.kernelID] = info
        }
    }

    /// Decodes a payload for a kernel being launched, by the envelope its launch expects.
    private func open(_ bytes: [UInt8]) throws(LauncherPayloadError) -> LauncherConnectionInfo {
        try LauncherPayloadDecoder.decode(bytes, keys: keys, requireAuthentication: requireAuthentication) { registered[$0] }
    }

    fileprivate func oversized(from peer: String) {
        rejected += 1
        logger.warning("rejected launcher payload larger than \(Self.maxPayload) bytes", metadata: ["peer": "\(peer)"])
    }

    public func close() async {
        for (_, waiter) in waiting { waiter.resume(throwing: CancellationError()) }
        waiting.removeAll()
        try? await channel.close()
    }
}

/// Set once the listener exists; read by connection handlers (which only exist after that).
private final class ListenerBox: @unchecked Sendable {
    // Written once before the channel accepts its first connection is not guaranteed, hence the lock.
    private let lock = NSLock()
    private var value: ResponseListener?
    var listener: ResponseListener? {
        get { lock.lock(); defer { lock.unlock() }; return value }
        set { lock.lock(); value = newValue; lock.unlock() }
    }
}

/// Reads one launcher connection to EOF, then hands the bytes to the listener.
private final class PayloadReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private var bytes: [UInt8] = []
    private var overflowed = false
    private let box: ListenerBox
    private let logger: Logger
    private var timeout: Scheduled<Void>?

    init(box: ListenerBox, logger: Logger) {
        self.box = box
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        timeout = context.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        guard !overflowed else { return }
        if bytes.count + buffer.readableBytes > ResponseListener.maxPayload {
            overflowed = true
            let peer = "\(context.remoteAddress.map { "\($0)" } ?? "?")"
            let listener = box.listener
            Task { await listener?.oversized(from: peer) }
            context.close(promise: nil)
            return
        }
        bytes += buffer.readBytes(length: buffer.readableBytes) ?? []
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        if !overflowed && !bytes.isEmpty {
            let payload = bytes
            let peer = "\(context.remoteAddress.map { "\($0)" } ?? "?")"
            let peerIP = context.remoteAddress?.ipAddress
            let listener = box.listener
            Task { await listener?.received(payload, from: peer, peerIP: peerIP) }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension PayloadReader: Sendable {}
