/// The kernel channels a WebSocket client can address.
///
/// jupyter_server bridges shell, iopub, stdin and control; the heartbeat is the
/// gateway's own business and is never relayed (jupyter_server `create_stream`).
public enum Channel: String, Sendable, CaseIterable, Hashable {
    case shell, iopub, stdin, control
}
