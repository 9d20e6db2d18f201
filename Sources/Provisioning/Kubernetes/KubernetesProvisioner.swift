import Foundation
import JupyterProtocol
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Runs a kernel as a Kubernetes pod, like EG's `KubernetesProcessProxy`
/// (`enterprise_gateway.services.processproxies.k8s`), with EG's kernel images unchanged: the pod
/// gets `RESPONSE_ADDRESS`, `PUBLIC_KEY`, `KERNEL_ID`, `PORT_RANGE`, `KERNEL_LANGUAGE`... and its
/// launcher returns the connection info to the response listener.
///
/// Differences from EG, on purpose: the gateway creates the pod itself (EG runs a Python script
/// that does), from a template parsed before it is filled (no template injection); the start is
/// the launcher's payload or the pod's failure, whichever comes first, seen through one watch
/// (EG polls the API every 0.5 s); a pod that cannot start says why (ImagePullBackOff,
/// Unschedulable, OOMKilled...) instead of timing out; kernels share one namespace by default,
/// so a namespaced Role suffices.
public actor KubernetesProvisioner: KernelProvisioner {
    private let services: RemoteServices
    private let config: JSONValue?
    private let portRange: String
    private var logger: Logger
    private var podName: String?
    private var namespace: String?
    private var createdNamespace = false
    private var launches = 0
    private var payload: LauncherConnectionInfo?
    private var podIP: String?
    private var nodeName: String?
    private var commEndpoint: (host: String, port: Int)?
    private var watcher: Task<Void, Never>?
    private var lastResourceVersion: String?
    private var ended: KernelExit?
    private var endWaiters: [CheckedContinuation<KernelExit, Never>] = []
    private var launchFailure: String?
    private var failureWaiters: [CheckedContinuation<String, Never>] = []
    private var oomKills = 0
    private var lastStatus = ""

    public init(services: RemoteServices, config: JSONValue?, logger: Logger) {
        self.services = services
        self.config = config
        self.portRange = config?["port_range"]?.stringValue ?? services.configuration.portRange
        self.logger = logger
    }

    /// Container waiting reasons after which the pod will not start without someone's help.
    static let fatalWaitingReasons: Set<String> = [
        "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError",
        "CreateContainerError", "CrashLoopBackOff", "RunContainerError",
    ]

    // MARK: Launch

    public func launch(_ request: LaunchRequest) async throws -> ConnectionInfo {
        let client = try await services.kubernetes()
        let kc = client.configuration
        if podName != nil { await cleanup(restart: true) }
        launches += 1
        let env = request.environment
        let uid = try Self.checkedID(env["KERNEL_UID"], name: "KERNEL_UID", prohibited: kc.prohibitedUIDs)
        let gid = try Self.checkedID(env["KERNEL_GID"], name: "KERNEL_GID", prohibited: kc.prohibitedGIDs)
        let username = env["KERNEL_USERNAME"] ?? "kernel"
        let base = KernelPodTemplate.dnsLabel(env["KERNEL_POD_NAME"] ?? "\(username)-\(request.kernelID)")
        let name = launches == 1 ? base : KernelPodTemplate.dnsLabel("\(base.prefix(56))-r\(launches)")

        // Namespace: the client's KERNEL_NAMESPACE, else the shared one, else one per kernel.
        let ns: String
        if let requested = env["KERNEL_NAMESPACE"], !requested.isEmpty {
            guard KernelPodTemplate.dnsLabel(requested) == requested else {
                throw ProvisionerError("KERNEL_NAMESPACE '\(requested.prefix(64))' is not a valid namespace name", kind: .badRequest)
            }
            ns = requested
        } else if kc.sharedNamespace {
            ns = kc.namespace
        } else {
            ns = KernelPodTemplate.dnsLabel("\(username)-\(request.kernelID)")
            if !createdNamespace {
                do {
                    try await client.createNamespace(ns, labels: KernelPodTemplate.labels(kernelID: request.kernelID))
                } catch {
                    throw ProvisionerError("cannot create namespace \(ns) for kernel \(request.kernelID): \(error)")
                }
                createdNamespace = true
            }
        }
        namespace = ns
        podName = name
        logger[metadataKey: "pod"] = "\(ns)/\(name)"

        let listener = try await services.listener()
        let image = env["KERNEL_IMAGE"] ?? config?["image_name"]?.stringValue ?? kc.defaultImage
        var protocolEnv: [(String, String)] = [
            ("KERNEL_ID", request.kernelID), ("KERNEL_USERNAME", username), ("KERNEL_NAMESPACE", ns),
            ("KERNEL_POD_NAME", name), ("KERNEL_LANGUAGE", request.spec.file.language), ("KERNEL_NAME", request.spec.name),
            ("KERNEL_SPARK_CONTEXT_INIT_MODE", env["KERNEL_SPARK_CONTEXT_INIT_MODE"] ?? "none"),
            ("RESPONSE_ADDRESS", listener.address), ("PUBLIC_KEY", listener.keys.publicKeyBase64), ("PORT_RANGE", portRange),
        ]
        if let uid { protocolEnv.append(("KERNEL_UID", String(uid))) }
        if let gid { protocolEnv.append(("KERNEL_GID", String(gid))) }
        let fixed = Set(protocolEnv.map(\.0))
        // The client's KERNEL_* values, as EG's template passes them; nothing of the gateway's own.
        let kernelVars = env.filter { $0.key.hasPrefix("KERNEL_") && !fixed.contains($0.key) && !$0.value.contains("\0") }
            .sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        let podEnv = protocolEnv + kernelVars

        var values: [String: String] = [:]
        for (k, v) in podEnv { values[k.lowercased()] = v }
        values["kernel_image"] = image
        values["kernel_service_account_name"] = env["KERNEL_SERVICE_ACCOUNT_NAME"] ?? kc.serviceAccountName
        values["response_address"] = listener.address
        values["public_key"] = listener.keys.publicKeyBase64
        values["port_range"] = portRange
        let template = try loadTemplate(spec: request.spec).map { text throws(ProvisionerError) in
            try KernelPodTemplate.render(text, values: values)
        }
        let manifest = KernelPodTemplate.finish(
            template, podName: name, namespace: ns, kernelID: request.kernelID, image: image, environment: podEnv,
            resources: request.resources, serviceAccount: values["kernel_service_account_name"]!, uid: uid, gid: gid,
            volumes: config?["volumes"], volumeMounts: config?["volume_mounts"])

        await listener.register(request.kernelID)
        ended = nil
        launchFailure = nil
        let created: JSONValue
        do {
            created = try await client.createPod(manifest, namespace: ns)
        } catch {
            await listener.unregister(request.kernelID)
            podName = nil
            throw ProvisionerError("Kubernetes refused the kernel pod \(ns)/\(name): \(error)")
        }
        lastResourceVersion = created[path: "metadata", "resourceVersion"]?.stringValue
        logger.info("kernel pod created", metadata: ["image": "\(image)"])
        startWatch(client: client)

        let outcome = await LauncherOutcome.wait(kernelID: request.kernelID, listener: listener, timeout: request.launchTimeout) {
            await self.waitForLaunchFailure()
        }
        switch outcome {
        case .info(let info):
            payload = info
            let ip = info.peerIP.flatMap { $0 == "127.0.0.1" ? podIP ?? $0 : $0 } ?? podIP ?? "127.0.0.1"
            commEndpoint = info.commPort.map { (host: ip, port: $0) }
            logger.info("kernel pod reported its connection info", metadata: ["pod_ip": "\(ip)", "pid": "\(info.pid.map(String.init) ?? "?")"])
            return info.connectionInfo(ip: ip, kernelName: request.spec.name)
        case .gone(let why):
            await removePod(client: client, grace: 0)
            throw ProvisionerError("Kernel pod \(ns)/\(name) for kernel \(request.kernelID) \(why)")
        case .timedOut:
            let status = lastStatus
            await removePod(client: client, grace: 0)
            throw ProvisionerError("KernelID: '\(request.kernelID)' launch timeout due to: Waited too long (\(request.launchTimeout.seconds)s) "
                                   + "to get connection info from pod \(ns)/\(name)" + (status.isEmpty ? "" : " (last status: \(status))"))
        }
    }

    static func checkedID(_ value: String?, name: String, prohibited: Set<Int>) throws(ProvisionerError) -> Int? {
        guard let value, !value.isEmpty else { return nil }
        guard let id = Int(value), id >= 0 else { throw ProvisionerError("\(name) '\(value.prefix(32))' is not a number", kind: .badRequest) }
        // EG's wording (container.py): the request is refused, not the gateway broken.
        if prohibited.contains(id) { throw ProvisionerError("Kernel's \(name) value of '\(id)' has been denied via EG_PROHIBITED_\(name == "KERNEL_UID" ? "UIDS" : "GIDS")!", kind: .forbidden) }
        return id
    }

    /// The kernelspec's template: `config.pod_template` (relative to its directory), else
    /// `kernel-pod.yaml` there or in `scripts/`; nil: the built-in pod.
    private func loadTemplate(spec: KernelSpec) throws(ProvisionerError) -> String? {
        let dir = spec.resourceDirectory
        if let named = config?["pod_template"]?.stringValue {
            let url = named.hasPrefix("/") ? URL(fileURLWithPath: named) : dir.appendingPathComponent(named)
            guard let text = try? String(contentsOf: url, encoding: .utf8) else {
                throw ProvisionerError("kernelspec '\(spec.name)': cannot read pod_template \(url.path)")
            }
            return text
        }
        for url in [dir.appendingPathComponent("kernel-pod.yaml"), dir.appendingPathComponent("scripts/kernel-pod.yaml")] { if let text = try? String(contentsOf: url, encoding: .utf8) { return text } }
        return nil
    }

    // MARK: Watching the pod

    private func startWatch(client: KubernetesClient) {
        watcher?.cancel()
        guard let name = podName, let ns = namespace else { return }
        watcher = Task { [weak self] in
            var failures = 0
            while !Task.isCancelled {
                guard let self else { return }
                let from = await self.lastResourceVersion
                do {
                    for try await (type, pod) in client.watchPod(name, namespace: ns, resourceVersion: from) {
                        failures = 0
                        await self.observe(type: type, pod: pod)
                        if await self.ended != nil { return }
                    }
                } catch {
                    failures += 1
                    // 410 Gone (too old a resourceVersion) or a broken stream: read the pod
                    // again and watch on from what it says. Gone only when the API says so after a
                    // second failed watch in a row (not when it cannot be reached).
                    do {
                        if let pod = try await client.pod(name, namespace: ns) {
                            await self.observe(type: "MODIFIED", pod: pod)
                        } else if failures > 1 {
                            await self.observe(type: "DELETED", pod: .object([:]))
                        }
                    } catch {}  // the API cannot be reached: try again
                    try? await Task.sleep(for: .milliseconds(min(5000, 200 * failures)))
                }
                if await self.ended != nil { return }
            }
        }
    }

    private func observe(type: String, pod: JSONValue) {
        if let rv = pod[path: "metadata", "resourceVersion"]?.stringValue { lastResourceVersion = rv }
        if let ip = pod[path: "status", "podIP"]?.stringValue, !ip.isEmpty { podIP = ip }
        if let node = pod[path: "spec", "nodeName"]?.stringValue { nodeName = node }
        let phase = pod[path: "status", "phase"]?.stringValue ?? ""
        let container = pod[path: "status", "containerStatuses", "0", "state"]
        var status = phase
        if type == "DELETED" {
            finish(exitFrom(container) ?? .vanished, why: "was deleted")
            return
        }
        if let waiting = container?["waiting"], let reason = waiting["reason"]?.stringValue {
            status = "\(phase), \(reason)"
            if Self.fatalWaitingReasons.contains(reason) {
                failLaunch("cannot start: \(reason)" + (waiting["message"]?.stringValue.map { " (\($0))" } ?? ""))
            }
        }
        for condition in pod[path: "status", "conditions"]?.arrayValue ?? [] where condition["type"]?.stringValue == "PodScheduled"
            && condition["status"]?.stringValue == "False" && condition["reason"]?.stringValue == "Unschedulable" {
            status = "\(phase), Unschedulable"
            failLaunch("cannot be scheduled (Unschedulable): \(condition["message"]?.stringValue ?? "no node fits")")
        }
        lastStatus = status
        if phase == "Failed" || phase == "Succeeded" {
            let terminated = container?["terminated"]
            let reason = terminated?["reason"]?.stringValue ?? phase
            if reason == "OOMKilled" { oomKills += 1 }
            let code = terminated?["exitCode"]?.intValue
            failLaunch("ended: \(reason)" + (code.map { " (exit code \($0))" } ?? ""))
            finish(exitFrom(container) ?? .vanished, why: reason)
        }
    }

    private func exitFrom(_ state: JSONValue?) -> KernelExit? {
        guard let terminated = state?["terminated"], let code = terminated["exitCode"]?.intValue else { return nil }
        if let signal = terminated["signal"]?.intValue, signal > 0 { return .signalled(signal: Int32(signal)) }
        return code > 128 && code < 160 ? .signalled(signal: Int32(code - 128)) : .exited(code: Int32(code))
    }

    private func failLaunch(_ why: String) {
        guard launchFailure == nil else { return }
        launchFailure = why
        for waiter in failureWaiters { waiter.resume(returning: why) }
        failureWaiters.removeAll()
    }

    private func waitForLaunchFailure() async -> String {
        if let launchFailure { return launchFailure }
        return await withCheckedContinuation { failureWaiters.append($0) }
    }

    private func finish(_ exit: KernelExit, why: String) {
        guard ended == nil else { return }
        ended = exit
        failLaunch(why)
        logger.info("kernel pod ended", metadata: ["how": "\(why)", "exit": "\(exit)"])
        for waiter in endWaiters { waiter.resume(returning: exit) }
        endWaiters.removeAll()
    }

    // MARK: KernelProvisioner

    public func waitForExit() async -> KernelExit {
        if let ended { return ended }
        return await withCheckedContinuation { endWaiters.append($0) }
    }

    public func isAlive() -> Bool { podName != nil && ended == nil }

    /// Through the launcher's comm port (EG's `send_signal`); without one, only the signals
    /// that end the kernel can be delivered, by deleting the pod.
    public func signal(_ sig: Int32) async {
        if let commEndpoint, await CommPort.signal(sig, host: commEndpoint.host, port: commEndpoint.port) { return }
        if sig == SIGKILL || sig == SIGTERM, let client = try? await services.kubernetes() {
            await removePod(client: client, grace: sig == SIGKILL ? 0 : client.configuration.deleteGracePeriod)
        }
    }

    public func terminate() async {
        guard let client = try? await services.kubernetes() else { return }
        await removePod(client: client, grace: client.configuration.deleteGracePeriod)
    }

    public func kill() async {
        guard let client = try? await services.kubernetes() else { return }
        await removePod(client: client, grace: 0)
    }

    private func removePod(client: KubernetesClient, grace: Int) async {
        guard let name = podName, let ns = namespace else { return }
        do {
            if try await client.deletePod(name, namespace: ns, gracePeriod: grace) {
                logger.info("kernel pod deleted", metadata: ["grace_seconds": "\(grace)"])
            }
        } catch {
            logger.warning("could not delete kernel pod", metadata: ["error": "\(error)"])
        }
    }

    public func cleanup(restart: Bool) async {
        if let commEndpoint { _ = await CommPort.shutdown(host: commEndpoint.host, port: commEndpoint.port) }
        commEndpoint = nil
        let client = try? await services.kubernetes()
        if let client, podName != nil { await removePod(client: client, grace: 0) }
        watcher?.cancel()
        watcher = nil
        if ended == nil { finish(.signalled(signal: SIGKILL), why: "was deleted") }
        if !restart, createdNamespace, let ns = namespace, let client {
            do {
                try await client.deleteNamespace(ns)
            } catch {
                logger.warning("could not delete the kernel's namespace", metadata: ["namespace": "\(ns)", "error": "\(error)"])
            }
            createdNamespace = false
        }
        podName = nil
        payload = nil
        podIP = nil
    }

    public func recentOutput() -> String { launchFailure ?? lastStatus }

    public func describe() -> String {
        "pod \(namespace ?? "?")/\(podName ?? "?")" + (payload?.pid.map { " pid \($0)" } ?? "")
    }

    public func details() -> [String: String] {
        var d: [String: String] = [:]
        d["pod"] = podName
        d["namespace"] = namespace
        d["node"] = nodeName
        d["pod_ip"] = podIP
        return d
    }

    public func outOfMemoryKills() -> Int { oomKills }

    public func release() {
        watcher?.cancel()
        watcher = nil
    }

    // MARK: Session persistence

    /// The pod's name and namespace (plus the comm port, for interrupts): the API knows the rest.
    public func persistentHandle() -> KernelHandle? {
        guard let podName, let namespace, ended == nil else { return nil }
        var extra = ["pod": podName, "namespace": namespace, "kernel_id": payload?.kernelID ?? ""]
        if createdNamespace { extra["created_namespace"] = "true" }
        if let commEndpoint {
            extra["comm_host"] = commEndpoint.host
            extra["comm_port"] = String(commEndpoint.port)
        }
        return KernelHandle(backend: "kubernetes", pid: payload?.pid.map { Int32($0) }, host: podIP, extra: extra)
    }

    /// Takes over a kernel pod an earlier gateway created, found by name or else by its
    /// `kernel_id` label, if it is still Running.
    public static func attach(handle: KernelHandle, kernelID: String, services: RemoteServices, config: JSONValue?,
                              logger: Logger) async -> KubernetesProvisioner? {
        guard handle.backend == "kubernetes", let client = try? await services.kubernetes(),
              let ns = handle.extra["namespace"], !ns.isEmpty else { return nil }
        var pod: JSONValue?
        if let name = handle.extra["pod"], !name.isEmpty { pod = try? await client.pod(name, namespace: ns) }
        if pod == nil {
            let found = (try? await client.pods(namespace: ns, labelSelector: "kernel_id=\(kernelID),component=kernel")) ?? []
            pod = found.first { $0[path: "status", "phase"]?.stringValue == "Running" }
        }
        guard let pod, pod[path: "status", "phase"]?.stringValue == "Running",
              pod[path: "metadata", "labels", "kernel_id"]?.stringValue == kernelID,
              let name = pod[path: "metadata", "name"]?.stringValue else { return nil }
        let provisioner = KubernetesProvisioner(services: services, config: config, logger: logger)
        await provisioner.adopt(pod: pod, name: name, namespace: ns, handle: handle, client: client)
        return provisioner
    }

    private func adopt(pod: JSONValue, name: String, namespace ns: String, handle: KernelHandle, client: KubernetesClient) {
        podName = name
        namespace = ns
        launches = 1
        createdNamespace = handle.extra["created_namespace"] == "true"
        logger[metadataKey: "pod"] = "\(ns)/\(name)"
        observe(type: "MODIFIED", pod: pod)
        if let h = handle.extra["comm_host"], let port = handle.extra["comm_port"].flatMap(Int.init) { commEndpoint = (h, port) }
        startWatch(client: client)
        logger.info("re-attached kernel pod")
    }
}
