import Foundation
import JupyterProtocol
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Runs a kernel launcher as a Slurm batch job. EG ships no Slurm process proxy; this is
/// Ganymede's (`ganymede.SlurmProvisioner` in `metadata.process_proxy.class_name`).
///
/// `sbatch` submits a script that `exec`s the kernelspec argv (EG launcher placeholders filled
/// in) with the kernel's environment (`--export=NONE`: the gateway's own environment stays
/// home); the launcher returns its connection info to the response listener, which ends the
/// wait at once. Meanwhile the job's state is watched with `squeue`, so a job that fails,
/// is cancelled or stays pending past the launch timeout ends the launch with Slurm's state and
/// reason, and the job is cancelled. Interrupts go through the launcher's comm port; shutdown and
/// clean-up `scancel` the job.
///
/// Kernelspec `metadata.process_proxy.config` keys: `partition`, `account`, `time_limit`,
/// `sbatch_args` (list); the request's `KERNEL_SLURM_PARTITION`, `KERNEL_SLURM_ACCOUNT`,
/// `KERNEL_SLURM_TIME_LIMIT` win over them, and GANYMEDE_SLURM_* give defaults.
public actor SlurmProvisioner: KernelProvisioner {
    private let services: RemoteServices
    private let config: JSONValue?
    private let portRange: String
    private var logger: Logger
    private var jobID: String?
    private var node: String?
    private var payload: LauncherConnectionInfo?
    /// The launcher's pid as recorded by the gateway that submitted the job (re-attach).
    private var adoptedPID: Int?
    private var commEndpoint: (host: String, port: Int)?
    private var script: String?
    private var logFile: String?
    private var ended: KernelExit?
    private var endWaiters: [CheckedContinuation<KernelExit, Never>] = []
    private var monitor: Task<Void, Never>?
    private var lastState = ""
    /// The launch key of a kernel started in the authenticated mode (`LaunchSecret`).
    private var commAuth: CommPort.Credentials?

    public init(services: RemoteServices, config: JSONValue?, logger: Logger) {
        self.services = services
        self.config = config
        self.portRange = config?["port_range"]?.stringValue ?? services.configuration.portRange
        self.logger = logger
    }

    /// Job states after which the job is gone (squeue `%T`).
    static let finalStates: Set<String> = [
        "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
        "REVOKED", "SPECIAL_EXIT", "TIMEOUT",
    ]

    func sbatchArguments(_ request: LaunchRequest, logFile: String) -> [String] {
        let c = services.configuration
        let env = request.environment
        var args = [c.sbatch, "--parsable", "--export=NONE", "--job-name=ganymede-\(request.kernelID)",
                    "--output=\(logFile)", "--open-mode=append"]
        if let p = env["KERNEL_SLURM_PARTITION"] ?? request.resources?.partition ?? config?["partition"]?.stringValue ?? c.slurmPartition {
            args.append("--partition=\(p)")
        }
        args += Self.resourceArguments(request.resources)
        if let a = env["KERNEL_SLURM_ACCOUNT"] ?? config?["account"]?.stringValue ?? c.slurmAccount { args.append("--account=\(a)") }
        if let t = env["KERNEL_SLURM_TIME_LIMIT"] ?? config?["time_limit"]?.stringValue ?? c.slurmTimeLimit { args.append("--time=\(t)") }
        if case .array(let extra)? = config?["sbatch_args"] { args += extra.compactMap(\.stringValue) }
        return args
    }

    /// A granted profile as Slurm requests: whole CPUs per task (rounded up: Slurm allocates
    /// cores), memory per node in MiB (rounded up), GPUs as a generic resource.
    static func resourceArguments(_ r: ResourceRequest?) -> [String] {
        guard let r else { return [] }
        var args: [String] = []
        if let cpus = r.cpus { args.append("--cpus-per-task=\(LocalResourceLimits.wholeCPUs(cpus))") }
        if let bytes = r.memoryBytes { args.append("--mem=\(max(1, (bytes + (1 << 20) - 1) >> 20))M") }
        if let gpus = r.gpus, gpus > 0 { args.append("--gres=gpu:\(gpus)") }
        return args
    }

    public func launch(_ request: LaunchRequest) async throws -> ConnectionInfo {
        if let jobID, ended == nil { _ = try? await ShortCommand.run([services.configuration.scancel, jobID]) }
        resetJob()
        let listener = try await services.listener()
        let c = services.configuration
        let secret = try c.launchSecret(config: config, kernelName: request.spec.name)
        let log = "\(c.kernelLogDirectory)/kernel-\(request.kernelID).log"
        logFile = log
        let argv = RemoteCommand.argv(spec: request.spec, kernelID: request.kernelID, responseAddress: listener.address,
                                      publicKey: listener.keys.publicKeyBase64, portRange: portRange,
                                      connectionFile: "\(c.kernelLogDirectory)/kernel-\(request.kernelID).json")
        var body = "#!/bin/sh\n# --export=NONE leaves PATH unset: env by absolute path, PATH comes from the kernel environment.\nexec /usr/bin/env"
        for (k, v) in RemoteCommand.environment(request.environment) { body += " " + RemoteCommand.quote("\(k)=\(v)") }
        body += " " + argv.map(RemoteCommand.quote).joined(separator: " ")
        // The launch key reaches the launcher's stdin from a here-document of this private
        // script (Slurm keeps it readable by the job's owner and the Slurm user only).
        body += secret.map { " <<'GANYMEDE_LAUNCH_KEY'\n\($0.base64)\nGANYMEDE_LAUNCH_KEY\n" } ?? " < /dev/null\n"
        let path = "\(request.runtimeDirectory)/kernel-\(request.kernelID).sbatch"
        try Self.writePrivate(body, to: path)
        script = path

        await listener.register(request.kernelID, secret: secret)
        commAuth = secret.map { CommPort.Credentials(secret: $0, kernelID: request.kernelID) }
        let submitted: ShortCommand.Result
        do {
            submitted = try await ShortCommand.run(sbatchArguments(request, logFile: log) + [path])
        } catch {
            await listener.unregister(request.kernelID)
            throw error
        }
        guard submitted.succeeded, let id = submitted.output.split(separator: "\n").first.map({ String($0.split(separator: ";")[0]) }),
              !id.isEmpty, id.allSatisfy(\.isNumber) else {
            await listener.unregister(request.kernelID)
            throw ProvisionerError("sbatch refused kernel \(request.kernelID): \(submitted.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        jobID = id
        logger[metadataKey: "slurm_job_id"] = "\(id)"
        logger.info("kernel submitted as Slurm job", metadata: ["slurm_job_id": "\(id)"])
        startMonitor(interval: .milliseconds(500))

        let outcome = await LauncherOutcome.wait(kernelID: request.kernelID, listener: listener, timeout: request.launchTimeout) {
            let exit = await self.waitForExit()
            let state = await self.lastState
            return "ended (\(state), \(exit))"
        }
        switch outcome {
        case .info(let info):
            payload = info
            let (state, _, batchHost) = await queryJob()
            node = batchHost
            let ip = info.peerIP ?? batchHost ?? "127.0.0.1"
            commEndpoint = info.commPort.map { (host: ip, port: $0) }
            logger.info("Slurm kernel reported its connection info",
                        metadata: ["node": "\(batchHost ?? "?")", "state": "\(state ?? "?")", "pid": "\(info.pid.map(String.init) ?? "?")"])
            startMonitor(interval: services.configuration.slurmPollInterval)
            return info.connectionInfo(ip: ip, kernelName: request.spec.name)
        case .gone(let how):
            let tail = recentOutput()
            throw ProvisionerError("Slurm job \(id) for kernel \(request.kernelID) \(how) before the launcher sent its connection info."
                                   + (tail.isEmpty ? "" : " Last output:\n" + tail))
        case .timedOut:
            let (state, reason, _) = await queryJob()
            _ = try? await ShortCommand.run([c.scancel, id])
            let tail = recentOutput()
            throw ProvisionerError("KernelID: '\(request.kernelID)' launch timeout due to: Slurm job \(id) was \(state ?? "unknown")"
                                   + (reason.map { " (Reason: \($0))" } ?? "")
                                   + " after \(request.launchTimeout.seconds)s without sending connection info; the job was cancelled."
                                   + (tail.isEmpty ? "" : " Last output:\n" + tail))
        }
    }

    private func resetJob() {
        monitor?.cancel()
        monitor = nil
        jobID = nil
        node = nil
        payload = nil
        adoptedPID = nil
        commEndpoint = nil
        ended = nil
        lastState = ""
        unanswered = 0
    }

    static func writePrivate(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o700)
        guard fd >= 0 else { throw ProvisionerError("cannot write \(path): errno \(errno)") }
        defer { close(fd) }
        fchmod(fd, 0o700)
        let bytes = Array(text.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw ProvisionerError("short write to \(path)") }
    }

    /// What one `squeue` call said about the job.
    enum JobQuery: Equatable {
        /// The job's state (squeue `%T`), pending reason and batch host.
        case known(state: String, reason: String?, host: String?)
        /// Slurm answered and does not know the job (purged after `MinJobAge`, or an invalid id).
        case gone
        /// squeue itself failed (slurmctld busy or restarting, a socket timeout): says nothing about the job.
        case unanswered(String)
    }

    /// Parses `squeue -h -t all -j <id> -o %T|%r|%B` output. squeue exits non-zero both when the
    /// controller cannot be reached and, on some versions, for a purged job id ("Invalid job id
    /// specified"); only the latter means the job is gone.
    static func parseQueue(succeeded: Bool, output: String) -> JobQuery {
        if !succeeded {
            return output.localizedCaseInsensitiveContains("invalid job id") ? .gone
                : .unanswered(output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        guard let line = output.split(separator: "\n").first(where: { $0.contains("|") }) else { return .gone }
        let parts = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, !parts[0].isEmpty else { return .unanswered(String(line)) }
        let reason = parts[1] == "None" || parts[1].isEmpty ? nil : parts[1]
        let host = parts[2].isEmpty || parts[2] == "n/a" || parts[2] == "(null)" ? nil : parts[2]
        return .known(state: parts[0], reason: reason, host: host)
    }

    private func query() async -> JobQuery {
        guard let jobID else { return .gone }
        do {
            let r = try await ShortCommand.run([services.configuration.squeue, "-h", "-t", "all", "-j", jobID, "-o", "%T|%r|%B"],
                                               timeout: .seconds(10))
            return Self.parseQueue(succeeded: r.succeeded, output: r.output)
        } catch {
            return .unanswered("\(error)")
        }
    }

    /// `squeue` state, reason and batch host of the job; nil state when Slurm does not know it or did not answer.
    private func queryJob() async -> (state: String?, reason: String?, host: String?) {
        if case .known(let state, let reason, let host) = await query() { return (state, reason, host) }
        return (nil, nil, nil)
    }

    /// Watches the job until it is in a final state or gone. Slurm offers no event for a job's
    /// end to a non-accounting client, so this is a poll; the start itself never waits for it.
    private func startMonitor(interval: Duration) {
        monitor?.cancel()
        monitor = Task { [weak self] in
            while !Task.isCancelled {
                guard let self else { return }
                if await self.checkJob() { return }
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// Consecutive squeue calls that got no answer; a busy controller is not a dead kernel.
    private var unanswered = 0
    /// squeue failures in a row after which the job is taken as lost.
    static let unansweredLimit = 5

    private func checkJob() async -> Bool {
        guard ended == nil else { return true }
        let state: String, reason: String?
        let answer = await query()
        // A monitor replaced mid-query (launch swaps the 500 ms watch for the slower one) has its
        // squeue cancelled; that answer says nothing about the job.
        if Task.isCancelled { return true }
        switch answer {
        case .gone:
            finish(.exited(code: -1), state: "no longer known to Slurm")
            return true
        case .unanswered(let why):
            unanswered += 1
            logger.warning("squeue did not answer", metadata: ["attempt": "\(unanswered)", "output": "\(why)"])
            if unanswered >= Self.unansweredLimit {
                finish(.exited(code: -1), state: "Slurm did not answer \(unanswered) state queries: \(why)")
                return true
            }
            return false
        case .known(let s, let r, _):
            unanswered = 0
            state = s
            reason = r
        }
        guard ended == nil else { return true }
        if state != lastState {
            logger.info("Slurm job state", metadata: ["state": "\(state)", "reason": "\(reason ?? "")"])
            lastState = state
        }
        if Self.finalStates.contains(state) {
            finish(state == "COMPLETED" ? .exited(code: 0) : .exited(code: 1), state: state + (reason.map { " (\($0))" } ?? ""))
            return true
        }
        return false
    }

    private func finish(_ exit: KernelExit, state: String) {
        guard ended == nil else { return }
        ended = exit
        lastState = state
        for w in endWaiters { w.resume(returning: exit) }
        endWaiters.removeAll()
    }

    public func waitForExit() async -> KernelExit {
        if let ended { return ended }
        guard jobID != nil else { return .exited(code: -1) }
        return await withCheckedContinuation { endWaiters.append($0) }
    }

    public func isAlive() -> Bool { jobID != nil && ended == nil }

    public func signal(_ sig: Int32) async {
        if let commEndpoint, await CommPort.signal(sig, host: commEndpoint.host, port: commEndpoint.port, auth: commAuth) { return }
        if let jobID { _ = try? await ShortCommand.run([services.configuration.scancel, "--signal=\(sig)", "--full", jobID]) }
    }

    public func terminate() async {
        guard let jobID, ended == nil else { return }
        _ = try? await ShortCommand.run([services.configuration.scancel, jobID])
        _ = await checkJob()
    }

    public func kill() async {
        guard let jobID, ended == nil else { return }
        _ = try? await ShortCommand.run([services.configuration.scancel, "--signal=KILL", "--full", jobID])
        _ = try? await ShortCommand.run([services.configuration.scancel, jobID])
        _ = await checkJob()
    }

    public func cleanup(restart: Bool) async {
        if let commEndpoint { _ = await CommPort.shutdown(host: commEndpoint.host, port: commEndpoint.port, auth: commAuth) }
        if let jobID, ended == nil { _ = try? await ShortCommand.run([services.configuration.scancel, jobID]) }
        monitor?.cancel()
        monitor = nil
        if ended == nil { finish(.signalled(signal: SIGTERM), state: "CANCELLED") }
        if let script { unlink(script) }
        script = nil
    }

    // MARK: Session persistence

    /// The job id is all the next gateway needs (plus the comm port, for interrupts): Slurm
    /// itself knows whether the job still runs.
    public func persistentHandle() -> KernelHandle? {
        guard let jobID, ended == nil else { return nil }
        var extra = ["slurm_job_id": jobID]
        if let commEndpoint {
            extra["comm_host"] = commEndpoint.host
            extra["comm_port"] = String(commEndpoint.port)
        }
        if let script { extra["script"] = script }
        commAuth?.store(in: &extra)
        return KernelHandle(backend: "slurm", pid: (payload?.pid ?? adoptedPID).map { Int32($0) }, host: node, logFile: logFile, extra: extra)
    }

    /// Takes over a kernel job an earlier gateway submitted, if Slurm still has it RUNNING.
    public static func attach(handle: KernelHandle, services: RemoteServices, config: JSONValue?, logger: Logger) async -> SlurmProvisioner? {
        guard handle.backend == "slurm", let job = handle.extra["slurm_job_id"], !job.isEmpty, job.allSatisfy(\.isNumber) else { return nil }
        let provisioner = SlurmProvisioner(services: services, config: config, logger: logger)
        return await provisioner.adopt(job: job, handle: handle) ? provisioner : nil
    }

    private func adopt(job: String, handle: KernelHandle) async -> Bool {
        jobID = job
        logger[metadataKey: "slurm_job_id"] = "\(job)"
        guard case .known(let state, _, let host) = await query(), state == "RUNNING" else {
            jobID = nil
            return false
        }
        lastState = state
        node = host ?? handle.host
        logFile = handle.logFile
        script = handle.extra["script"]
        adoptedPID = handle.pid.map(Int.init)
        if let h = handle.extra["comm_host"], let port = handle.extra["comm_port"].flatMap(Int.init) { commEndpoint = (h, port) }
        commAuth = CommPort.Credentials(handle: handle.extra)
        startMonitor(interval: services.configuration.slurmPollInterval)
        logger.info("re-attached Slurm job", metadata: ["node": "\(node ?? "?")"])
        return true
    }

    public func recentOutput() -> String {
        guard let logFile, let text = try? String(contentsOfFile: logFile, encoding: .utf8) else { return "" }
        return text.split(separator: "\n").suffix(15).joined(separator: "\n")
    }

    public func describe() -> String {
        "slurm job \(jobID ?? "?") on \(node ?? "?")" + (lastState.isEmpty ? "" : ", \(lastState)")
    }

    public func details() -> [String: String] {
        var d = ["kind": "slurm"]
        if let jobID { d["slurm_job_id"] = jobID }
        if let node { d["host"] = node }
        if let pid = payload?.pid ?? adoptedPID { d["pid"] = String(pid) }
        return d
    }
}
