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
        try kubernetes(into: &r)
        if let mode = string("launcher_auth", env: []) {
            guard let v = LauncherAuthMode(rawValue: mode.lowercased()) else {
                throw ValidationError("GANYMEDE_LAUNCHER_AUTH must be one of \(LauncherAuthMode.allCases.map(\.rawValue).joined(separator: ", ")), got '\(mode)'")
            }
            r.launcherAuth = v
        }
        return r
    }

    /// Kernel pods: a kubeconfig (GANYMEDE_KUBECONFIG, `kubeconfig:`, KUBECONFIG) or the pod's
    /// service account; EG's names for the namespace, sharing, service account and prohibited ids.
    private func kubernetes(into r: inout RemoteConfiguration) throws {
        var k: KubernetesConfiguration?
        if let path = string("kubeconfig", env: ["KUBECONFIG"]) {
            do {
                k = try KubernetesConfiguration.kubeconfig(at: path)
            } catch {
                r.kubernetesProblem = error.message
            }
        } else {
            k = KubernetesConfiguration.inCluster(environment: env)
        }
        guard var c = k else { return }
        if let ns = string("kubernetes_namespace", env: ["EG_NAMESPACE"]) { c.namespace = ns }
        if let shared = try bool("shared_namespace", env: ["EG_SHARED_NAMESPACE"]) { c.sharedNamespace = shared }
        if let sa = string("kernel_service_account_name", env: ["EG_DEFAULT_KERNEL_SERVICE_ACCOUNT_NAME"]) { c.serviceAccountName = sa }
        if let image = string("kernel_image", env: ["EG_KERNEL_IMAGE"]) { c.defaultImage = image }
        if let grace = try int("kernel_pod_grace_period", env: []) { c.deleteGracePeriod = max(0, grace) }
        func ids(_ text: String) throws -> Set<Int> {
            Set(try Self.list(text).map { s in
                guard let i = Int(s) else { throw ValidationError("prohibited ids must be numbers, got '\(s)'") }
                return i
            })
        }
        if let uids = stringAllowingEmpty("prohibited_uids", env: ["EG_PROHIBITED_UIDS"]) { c.prohibitedUIDs = try ids(uids) }
        if let gids = stringAllowingEmpty("prohibited_gids", env: ["EG_PROHIBITED_GIDS"]) { c.prohibitedGIDs = try ids(gids) }
        r.kubernetes = c
    }
}
