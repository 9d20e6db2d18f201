import ArgumentParser
import Provisioning

extension Settings {
    /// Remote-kernel settings, by EG's names where EG has them (`processproxy.py`,
    /// `distributed.py`), else `GANYMEDE_*`; config-file keys are the lowercase names without
    /// prefix (e.g. `remote_hosts: [a, b]`).
    func remoteConfiguration() throws -> RemoteConfiguration {
        var r = RemoteConfiguration()
        r.responseIP = string("response_ip", env: ["EG_RESPONSE_IP"])
        r.responsePort = try int("response_port", env: ["EG_RESPONSE_PORT"]) ?? r.responsePort
        r.responsePortRetries = try int("response_port_retries", env: ["EG_RESPONSE_PORT_RETRIES"]) ?? r.responsePortRetries
        guard (0...65535).contains(r.responsePort) else { throw ValidationError("EG_RESPONSE_PORT must be 0-65535") }
        if let hosts = string("remote_hosts", env: ["EG_REMOTE_HOSTS"]) { r.remoteHosts = Self.list(hosts) }
        r.remoteUser = string("remote_user", env: ["EG_REMOTE_USER"])
        r.sshPort = try int("ssh_port", env: ["EG_SSH_PORT"]) ?? r.sshPort
        r.sshOptions = (string("ssh_options", env: []) ?? "").split(separator: " ").map(String.init)
        r.sshConnectTimeout = try int("ssh_connect_timeout", env: []) ?? r.sshConnectTimeout
        if let lb = string("load_balancing_algorithm", env: ["EG_LOAD_BALANCING_ALGORITHM"]) {
            guard let v = RemoteConfiguration.LoadBalancing(rawValue: lb) else {
                throw ValidationError("EG_LOAD_BALANCING_ALGORITHM must be one of \(RemoteConfiguration.LoadBalancing.allCases.map(\.rawValue).joined(separator: ", ")), got '\(lb)'")
            }
            r.loadBalancing = v
        }
        r.kernelLogDirectory = string("kernel_log_dir", env: ["EG_KERNEL_LOG_DIR"]) ?? r.kernelLogDirectory
        r.enableTunneling = try bool("enable_tunneling", env: ["EG_ENABLE_TUNNELING"]) ?? r.enableTunneling
        r.portRange = string("port_range", env: ["EG_PORT_RANGE"]) ?? r.portRange
        r.sbatch = string("slurm_sbatch", env: []) ?? r.sbatch
        r.squeue = string("slurm_squeue", env: []) ?? r.squeue
        r.scancel = string("slurm_scancel", env: []) ?? r.scancel
        r.slurmPartition = string("slurm_partition", env: [])
        r.slurmAccount = string("slurm_account", env: [])
        r.slurmTimeLimit = string("slurm_time_limit", env: [])
        if let s = try double("slurm_poll_interval", env: []) { r.slurmPollInterval = .milliseconds(Int64(max(0.1, s) * 1000)) }
        if let mode = string("launcher_auth", env: []) {
            guard let v = LauncherAuthMode(rawValue: mode.lowercased()) else {
                throw ValidationError("GANYMEDE_LAUNCHER_AUTH must be one of \(LauncherAuthMode.allCases.map(\.rawValue).joined(separator: ", ")), got '\(mode)'")
            }
            r.launcherAuth = v
        }
        return r
    }
}
