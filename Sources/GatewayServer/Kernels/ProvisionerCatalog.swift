import JupyterProtocol
import Logging
import Provisioning

/// Which backend runs a kernelspec, from `metadata.process_proxy.class_name` (EG) or
/// `metadata.kernel_provisioner.provisioner_name` (jupyter_client). EG's class names map to
/// ours so EG kernelspecs work unchanged; EG has no Slurm proxy, so Slurm has a Ganymede name.
enum ProvisionerCatalog {
    enum Kind: String, Sendable { case local, ssh, slurm, kubernetes }

    static let names: [String: Kind] = [
        "enterprise_gateway.services.processproxies.processproxy.LocalProcessProxy": .local,
        "local-provisioner": .local,
        "ganymede.LocalProvisioner": .local,
        "enterprise_gateway.services.processproxies.distributed.DistributedProcessProxy": .ssh,
        "ganymede.SSHProvisioner": .ssh,
        "ganymede.SlurmProvisioner": .slurm,
        "enterprise_gateway.services.processproxies.k8s.KubernetesProcessProxy": .kubernetes,
        "ganymede.KubernetesProvisioner": .kubernetes,
    ]

    /// The class name a kernelspec asks for, if any (none means local, as in EG).
    static func requestedName(_ spec: KernelSpec) -> String? {
        spec.processProxy?["class_name"]?.stringValue ?? spec.file.metadata?["kernel_provisioner"]?["provisioner_name"]?.stringValue
    }

    static func kind(for spec: KernelSpec) throws(GatewayError) -> Kind {
        guard let name = requestedName(spec) else { return .local }
        guard let kind = names[name] else {
            throw GatewayError(.notImplemented, reason: "Unsupported provisioner",
                               "Kernelspec '\(spec.name)' asks for process proxy '\(name)', which Ganymede does not provide. "
                                   + "Supported: \(names.keys.sorted().joined(separator: ", "))")
        }
        return kind
    }

    /// Request values the remote backends use as command arguments: refused up front as bad input.
    static func validate(clientEnv: [String: String]?) throws(GatewayError) {
        if let host = clientEnv?["KERNEL_REMOTE_HOST"], !host.isEmpty, !SSHHosts.isHostName(host) {
            throw .badRequest("KERNEL_REMOTE_HOST '\(host.prefix(64))' is not a host name or IP address")
        }
    }

    /// One line per kernelspec whose class name is unknown (checked at start-up).
    static func problems(in specs: [String: KernelSpec]) -> [String] {
        specs.values.sorted { $0.name < $1.name }.compactMap { spec in
            guard let name = requestedName(spec), names[name] == nil else { return nil }
            return "kernelspec '\(spec.name)' (\(spec.resourceDirectory.path)) names unknown process proxy '\(name)'"
        }
    }

    /// Takes over a kernel that an earlier gateway recorded (session persistence), with the
    /// backend that wrote the handle; nil when that kernel is no longer running.
    static func attach(_ record: KernelSessionRecord, spec: KernelSpec, remote: RemoteServices, runtimeDirectory: String,
                       logger: Logger) async -> (any KernelProvisioner)? {
        let config = spec.processProxy?["config"]
        switch record.handle.backend {
        case "local": return await LocalProvisioner.attach(handle: record.handle, info: record.connection, logger: logger)
        case "ssh":
            return await SSHProvisioner.attach(handle: record.handle, services: remote, config: config,
                                               runtimeDirectory: runtimeDirectory, logger: logger)
        case "slurm": return await SlurmProvisioner.attach(handle: record.handle, services: remote, config: config, logger: logger)
        case "kubernetes":
            return await KubernetesProvisioner.attach(handle: record.handle, kernelID: record.kernelID, services: remote, config: config,
                                                      logger: logger)
        default: return nil
        }
    }

    static func make(_ kind: Kind, spec: KernelSpec, remote: RemoteServices, logger: Logger) -> any KernelProvisioner {
        let config = spec.processProxy?["config"]
        switch kind {
        case .local: return LocalProvisioner(logger: logger)
        case .ssh: return SSHProvisioner(services: remote, config: config, logger: logger)
        case .slurm: return SlurmProvisioner(services: remote, config: config, logger: logger)
        case .kubernetes: return KubernetesProvisioner(services: remote, config: config, logger: logger)
        }
    }
}
