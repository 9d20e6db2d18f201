/// What a gateway needs to find a running kernel again after it restarts: written to the
/// session store while the kernel runs, read back by `LocalProvisioner.attach` (and, for other
/// backends, their own attach) when the gateway starts.
///
/// EG keeps the same facts in its `KernelSessionManager` records (`process_info`: pid,
/// pgid, ip, and backend ids such as the YARN application id or the pod name).
public struct KernelHandle: Codable, Sendable, Equatable {
    /// Which provisioner wrote it ("local", ...).
    public var backend: String
    public var pid: Int32?
    public var host: String?
    public var connectionFile: String?
    public var logFile: String?
    /// Backend-specific facts (job id, pod name, ...).
    public var extra: [String: String]

    public init(backend: String, pid: Int32? = nil, host: String? = nil, connectionFile: String? = nil,
                logFile: String? = nil, extra: [String: String] = [:]) {
        self.backend = backend
        self.pid = pid
        self.host = host
        self.connectionFile = connectionFile
        self.logFile = logFile
        self.extra = extra
    }
}

extension KernelProvisioner {
    /// Backends that cannot be re-attached say so by returning nil.
    public func persistentHandle() async -> KernelHandle? { nil }
}
