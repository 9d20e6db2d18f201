import CZeroMQ

/// A libzmq call that failed, with `zmq_strerror`'s text.
public struct ZMQError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let code: Int32
    public var description: String {
        "\(call): " + String(cString: zmq_strerror(code))
    }

    static func last(_ call: String) -> ZMQError {
        ZMQError(call: call, code: zmq_errno())
    }
}
