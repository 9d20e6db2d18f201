import JupyterProtocol

/// How a kernel process ended.
public enum KernelExit: Sendable, Equatable, CustomStringConvertible {
    case exited(code: Int32)
    case signalled(signal: Int32)
    /// A re-attached kernel is not our child: that it ended is known, how is not.
    case vanished

    public var description: String {
        switch self {
        case .vanished: "ended (exit status unknown: re-attached process, not a child of this gateway)"
        case .exited(let code): "exited with code \(code)"
        case .signalled(let signal): "killed by signal \(signal)\(signal == 9 ? " (SIGKILL)" : signal == 15 ? " (SIGTERM)" : "")"
        }
    }
}

/// What a provisioner needs to start one kernel.
public struct LaunchRequest: Sendable {
    public var kernelID: String
    public var spec: KernelSpec
    /// The kernel's final environment (client, inherited and kernelspec values merged).
    public var environment: [String: String]
    /// Where connection files and kernel logs go (private to the gateway user).
    public var runtimeDirectory: String
    public var workingDirectory: String?
    /// How long a launch may wait for a remote launcher's connection info (KERNEL_LAUNCH_TIMEOUT).
    public var launchTimeout: Duration = .seconds(40)
    /// What the kernel was granted (resource profiles), for backends that map it to their own
    /// requests (Slurm's `--cpus-per-task`, `--mem`, `--gres`) or enforce it on the far side.
    public var resources: ResourceRequest?

    public init(kernelID: String, spec: KernelSpec, environment: [String: String], runtimeDirectory: String, workingDirectory: String? = nil) {
        self.kernelID = kernelID
        self.spec = spec
        self.environment = environment
        self.runtimeDirectory = runtimeDirectory
        self.workingDirectory = workingDirectory
    }
}

/// Starts, signals and stops kernels on one kind of backend.
///
/// Mirrors jupyter_client's `KernelProvisionerBase` (`provisioning/provisioner_base.py`):
/// `launch_kernel` → connection info, `poll`, `send_signal`, `terminate`, `kill`, `cleanup`.
/// One provisioner instance manages one kernel, across restarts.
public protocol KernelProvisioner: Sendable {
    /// How to find the running kernel after a gateway restart (session persistence); nil
    /// when the backend cannot be re-attached. See `KernelHandle`.
    func persistentHandle() async -> KernelHandle?

    /// Starts the kernel process and returns how to reach it. A restart calls this again; the
    /// local backend reuses the same connection info (ports and key), as jupyter_client does,
    /// while remote launchers choose new ones (the gateway then re-points its connection).
    func launch(_ request: LaunchRequest) async throws -> ConnectionInfo

    /// Returns when the current kernel process has ended.
    func waitForExit() async -> KernelExit

    /// Whether the current kernel process is alive.
    func isAlive() async -> Bool

    /// Sends a signal to the kernel's process group (signal-mode interrupts use SIGINT).
    func signal(_ signal: Int32) async

    /// SIGTERM to the kernel's process group.
    func terminate() async

    /// SIGKILL to the kernel's process group.
    func kill() async

    /// Removes what the launch created (connection file). `restart` keeps what a
    /// relaunch reuses.
    func cleanup(restart: Bool) async

    /// Recent output of the kernel process, for error messages about failed starts.
    func recentOutput() async -> String

    /// A short description for logs and the REST model (pid, host, job id).
    func describe() async -> String

    /// Backend facts for the REST kernel model's `provisioner` field (host, pid, Slurm job id).
    func details() async -> [String: String]

    /// The gateway is leaving the kernel running for the next gateway (session persistence):
    /// let go of this gateway's own helpers (an `ssh` session, tunnels) without stopping the kernel.
    func release() async

    /// How many times the kernel's memory limit on its host has OOM-killed a process, for
    /// backends that enforce limits on the far side (0 when unknown).
    func outOfMemoryKills() async -> Int
}

extension KernelProvisioner {
    public func details() async -> [String: String] { [:] }
    public func release() async {}
    public func outOfMemoryKills() async -> Int { 0 }
}

/// Why a kernel could not be started.
public struct ProvisionerError: Error, CustomStringConvertible, Sendable {
    /// What the gateway answers: a failed launch (500), or the request's own fault.
    public enum Kind: Sendable { case failed, badRequest, forbidden }
    public var message: String
    public var kind: Kind
    public init(_ message: String, kind: Kind = .failed) {
        self.message = message
        self.kind = kind
    }
    public var description: String { message }
}
