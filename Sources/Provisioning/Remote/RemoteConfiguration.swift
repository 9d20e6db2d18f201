import Foundation
import JupyterProtocol

/// Settings shared by the remote provisioners, named as EG names them where EG has them
/// (`processproxy.py`, `distributed.py`); kernelspec `metadata.process_proxy.config` overrides
/// the per-kernelspec ones (`remote_hosts`, `port_range`, Slurm's `partition`...).
public struct RemoteConfiguration: Sendable {
    /// EG's two algorithms, and placement by free capacity (the gateway's ledger of each host's
    /// CPUs, memory and GPUs; see the resource profiles).
    public enum LoadBalancing: String, Sendable, CaseIterable {
        case roundRobin = "round-robin", leastConnection = "least-connection", freeCapacity = "free-capacity"
    }

    /// EG_RESPONSE_IP; nil: the first non-loopback IPv4 address of this host, else 127.0.0.1.
    public var responseIP: String?
    /// EG_RESPONSE_PORT (0 = any free port) and EG_RESPONSE_PORT_RETRIES.
    public var responsePort = 8877
    public var responsePortRetries = 10
    /// EG_REMOTE_HOSTS (default localhost), EG_REMOTE_USER (default: the gateway's user), EG_SSH_PORT.
    public var remoteHosts = ["localhost"]
    public var remoteUser: String?
    public var sshPort = 22
    /// GANYMEDE_SSH_OPTIONS: extra `ssh` arguments (identity file, known-hosts file...), split on spaces.
    public var sshOptions: [String] = []
    /// Seconds `ssh` may take to connect (ConnectTimeout).
    public var sshConnectTimeout = 10
    /// EG_LOAD_BALANCING_ALGORITHM.
    public var loadBalancing = LoadBalancing.roundRobin
    /// EG_KERNEL_LOG_DIR: where remote launchers write `kernel-<id>.log` (on the remote host).
    public var kernelLogDirectory = "/tmp"
    /// EG_ENABLE_TUNNELING: reach the kernel's ports through the SSH connection.
    public var enableTunneling = false
    /// EG_PORT_RANGE (`lo..hi`, `0..0` = any), passed to launchers as `{port_range}`.
    public var portRange = "0..0"
    /// Slurm commands (GANYMEDE_SLURM_*), and defaults for kernelspecs that name none.
    public var sbatch = "sbatch"
    public var squeue = "squeue"
    public var scancel = "scancel"
    public var slurmPartition: String?
    public var slurmAccount: String?
    public var slurmTimeLimit: String?
    /// How often a running Slurm kernel's job state is checked (its end is otherwise not signalled).
    public var slurmPollInterval: Duration = .seconds(3)

    /// `GANYMEDE_LAUNCHER_AUTH` (config `launcher_auth`): `required` refuses launchers that speak only EG's version-1 envelope.
    public var launcherAuth = LauncherAuthMode.optional

    /// The Kubernetes API for kernel pods (kubeconfig or in-cluster); nil: not configured.
    public var kubernetes: KubernetesConfiguration?
    /// Why loading it failed, for the error a kernel pod start then gets.
    public var kubernetesProblem: String?

    public init() {}

    /// A fresh launch key when the kernelspec asks for the authenticated mode; an error when the
    /// gateway requires it and the kernelspec does not (its launcher would only be refused).
    func launchSecret(config: JSONValue?, kernelName: String) throws(ProvisionerError) -> LaunchSecret? {
        if try LauncherAuthRequest.wanted(config) { return LaunchSecret() }
        if launcherAuth == .required {
            throw ProvisionerError("Kernelspec '\(kernelName)' uses an unauthenticated launcher (EG's version-1 protocol), and this gateway "
                                   + "requires authenticated launchers (GANYMEDE_LAUNCHER_AUTH=required): add \"launcher_auth\": \"aes-gcm\" to its "
                                   + "metadata.process_proxy.config and use a launcher that supports it (--launch-key-stdin).")
        }
        return nil
    }
}
