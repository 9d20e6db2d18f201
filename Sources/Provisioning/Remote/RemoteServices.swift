import Foundation
import Logging
import NIOCore
import NIOPosix

/// What all remote kernels of one gateway share: the launcher response listener (started on the
/// first remote launch, as EG's `ResponseManager`) and the SSH control masters.
public actor RemoteServices {
    public nonisolated let configuration: RemoteConfiguration
    public nonisolated let ssh: SSHHosts
    private let logger: Logger
    private var listenerTask: Task<ResponseListener, any Error>?
    private var kubernetesClient: KubernetesClient?

    public init(configuration: RemoteConfiguration, runtimeDirectory: String, logger: Logger) {
        self.configuration = configuration
        self.ssh = SSHHosts(configuration: configuration, controlDirectory: runtimeDirectory, logger: logger)
        self.logger = logger
    }

    public func listener() async throws -> ResponseListener {
        if listenerTask == nil {
            let c = configuration
            let logger = logger
            listenerTask = Task {
                let listener = try await ResponseListener.start(host: c.responseIP ?? Self.defaultResponseIP(), port: c.responsePort,
                                                                retries: c.responsePortRetries, logger: logger)
                await listener.setAuthenticationRequired(c.launcherAuth == .required)
                return listener
            }
        }
        do {
            return try await listenerTask!.value
        } catch {
            listenerTask = nil
            throw error
        }
    }

    /// The Kubernetes API client, made on the first kernel pod.
    public func kubernetes() throws -> KubernetesClient {
        if let kubernetesClient { return kubernetesClient }
        guard let k = configuration.kubernetes else {
            throw ProvisionerError("No Kubernetes API is configured for kernel pods: run the gateway in a cluster (service account) "
                                   + "or point GANYMEDE_KUBECONFIG / KUBECONFIG at a kubeconfig"
                                   + (configuration.kubernetesProblem.map { " (\($0))" } ?? ""))
        }
        let client = try KubernetesClient(configuration: k)
        kubernetesClient = client
        return client
    }

    /// EG's default: the first local IPv4 address that is not loopback, so launchers on other
    /// hosts can reach it; loopback when there is none.
    static func defaultResponseIP() -> String {
        let devices = (try? System.enumerateDevices()) ?? []
        for device in devices {
            guard let address = device.address, case .v4 = address, let ip = address.ipAddress else { continue }
            if !ip.hasPrefix("127.") { return ip }
        }
        return "127.0.0.1"
    }

    /// Stops the listener and the SSH masters (gateway exit, after every kernel is stopped).
    public func shutdown() async {
        if let task = listenerTask, let listener = try? await task.value { await listener.close() }
        listenerTask = nil
        await ssh.shutdown()
        await kubernetesClient?.shutdown()
        kubernetesClient = nil
    }
}
