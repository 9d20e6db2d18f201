import Foundation
import GatewayServer
import JupyterProtocol
import KernelBridge
import Logging

/// What one execution produced, collected the way KG's `NotebookAPIHandler.on_recv` does:
/// stdout `stream` text (stderr is ignored), the `execute_result` mime bundle, and the error.
public struct CellOutput: Sendable {
    public struct Failure: Sendable {
        public var ename: String
        public var evalue: String
        public var traceback: [String]
    }

    public var stdout: [String] = []
    public var result: OrderedJSON?
    public var error: Failure?

    /// The response body by KG's precedence: stdout text, else the result bundle as
    /// `json.dumps` prints it, else empty.
    public var body: String {
        if !stdout.isEmpty { return stdout.joined() }
        return result?.pythonDumps() ?? ""
    }
}

/// Why an execution did not complete.
public enum ExecutionFailure: Error, Sendable {
    case timedOut
    case kernelDied(String)
}

/// Runs code on one kernel through its shared connection, as one more client of it: requests
/// go out on shell with this client's session, so replies route back here, and iopub messages
/// are matched to the request by `parent_header.msg_id` until `status: idle`.
public actor KernelRunner {
    public nonisolated let kernel: ManagedKernel
    private let connection: KernelConnection
    private let clientID: KernelConnection.ClientID
    private let builder = MessageBuilder(username: "ganymede-notebook-http")
    private var pending: [String: Pending] = [:]
    private var pump: Task<Void, Never>?
    /// Set once the kernel restarted, died or its connection closed: the runner is unusable.
    public private(set) var deathReason: String?

    struct Pending {
        var output = CellOutput()
        let continuation: CheckedContinuation<CellOutput, any Error>
    }

    private init(kernel: ManagedKernel, connection: KernelConnection, clientID: KernelConnection.ClientID) {
        self.kernel = kernel
        self.connection = connection
        self.clientID = clientID
    }

    /// Attaches to a started kernel.
    public static func attach(_ kernel: ManagedKernel) async throws -> KernelRunner {
        guard let connection = await kernel.connection else {
            throw ExecutionFailure.kernelDied("kernel \(kernel.id) has no connection")
        }
        let (clientID, stream) = await connection.addClient(session: "ganymede-notebook-http-\(UUID().uuidString.lowercased())")
        let runner = KernelRunner(kernel: kernel, connection: connection, clientID: clientID)
        await runner.startPump(stream)
        return runner
    }

    private func startPump(_ stream: AsyncStream<OutboundMessage>) {
        pump = Task { [weak self] in
            for await outbound in stream {
                await self?.received(outbound)
            }
            await self?.markDead("the kernel connection closed")
        }
    }

    /// Executes `code` (as jupyter_client's `execute()` defaults, but `allow_stdin: false`, so `input()` fails instead of
    /// blocking) and waits for its `status: idle`. A timeout leaves the kernel busy: the caller
    /// interrupts it or replaces it.
    public func execute(_ code: String, timeout: Duration) async throws -> CellOutput {
        if let deathReason { throw ExecutionFailure.kernelDied(deathReason) }
        var content: [UInt8] = Array(#"{"code":"#.utf8)
        JSONScanner.appendQuoted(code, to: &content)
        content.append(contentsOf: #","silent":false,"store_history":true,"user_expressions":{},"allow_stdin":false,"stop_on_error":true}"#.utf8)
        let message = builder.message(type: "execute_request", content: content)
        let msgID = message.msgID
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { await self?.fail(msgID, with: .timedOut) }
        }
        defer { timer.cancel() }
        let (connection, clientID) = (self.connection, self.clientID)
        return try await withCheckedThrowingContinuation { continuation in
            pending[msgID] = Pending(continuation: continuation)
            // Sent only once the reply has somewhere to go.
            Task { await connection.send(message, on: .shell, from: clientID) }
        }
    }

    private func fail(_ msgID: String, with failure: ExecutionFailure) {
        pending.removeValue(forKey: msgID)?.continuation.resume(throwing: failure)
    }

    private func markDead(_ reason: String) {
        guard deathReason == nil else { return }
        deathReason = reason
        for (_, p) in pending { p.continuation.resume(throwing: ExecutionFailure.kernelDied(reason)) }
        pending.removeAll()
    }

    private func received(_ outbound: OutboundMessage) {
        let message = outbound.message
        guard outbound.channel == .iopub else { return }
        guard let parent = message.parentMsgID else {
            // The gateway's own status broadcasts: the kernel restarted (its state, and the seed,
            // are gone) or died.
            if message.msgType == "status", let state = OrderedJSON.parse(message.content)?["execution_state"]?.stringValue,
               state == "restarting" || state == "dead" {
                markDead("the kernel \(state == "dead" ? "died" : "restarted")")
            }
            return
        }
        guard var p = pending[parent] else { return }
        switch message.msgType {
        case "status":
            if OrderedJSON.parse(message.content)?["execution_state"]?.stringValue == "idle" {
                pending.removeValue(forKey: parent)
                p.continuation.resume(returning: p.output)
                return
            }
        case "execute_result":
            p.output.result = OrderedJSON.parse(message.content)?["data"]
        case "stream":
            let content = OrderedJSON.parse(message.content)
            let name = content?["name"]?.stringValue
            if name == nil || name == "stdout", let text = content?["text"]?.stringValue { p.output.stdout.append(text) }
        case "error":
            let content = OrderedJSON.parse(message.content)
            var traceback: [String] = []
            if case .array(let lines)? = content?["traceback"] { traceback = lines.compactMap(\.stringValue) }
            p.output.error = CellOutput.Failure(ename: content?["ename"]?.stringValue ?? "Error",
                                                evalue: content?["evalue"]?.stringValue ?? "", traceback: traceback)
        default:
            break
        }
        pending[parent] = p
    }

    /// Detaches from the connection (the kernel itself is stopped by its owner).
    public func close() async {
        pump?.cancel()
        markDead("the runner was closed")
        await connection.removeClient(clientID)
    }
}
