import CZeroMQ

/// The socket types a Jupyter client uses (jupyter_client `connect.py channel_socket_types`).
public enum SocketType: Sendable {
    case dealer, sub, req

    var raw: Int32 {
        switch self {
        case .dealer: ZMQ_DEALER
        case .sub: ZMQ_SUB
        case .req: ZMQ_REQ
        }
    }
}
