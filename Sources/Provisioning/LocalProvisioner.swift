import Foundation
import JupyterProtocol
import Logging
import Subprocess
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Runs a kernel as a child process of the gateway, like jupyter_client's `LocalProvisioner`
/// and EG's `LocalProcessProxy`.
///
/// The kernel gets its own session and process group (so signals reach its children and a
/// Ctrl-C on the gateway's terminal does not), a connection file readable only by the
/// gateway user, and a log file that holds its stdout and stderr.
public actor LocalProvisioner: KernelProvisioner {
    private var connectionInfo: ConnectionInfo?
    private var connectionFile: String?
    private var logFile: String?
    private var pid: pid_t?
    private var generation = 0
    private var exits: [Int: KernelExit] = [:]
    private var waiters: [(generation: Int, continuation: CheckedContinuation<KernelExit, Never>)] = []
    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    public func launch(_ request: LaunchRequest) async throws -> ConnectionInfo {
        let info = try prepareConnection(request)
        let file = connectionFile!
        let argv = KernelSpecTemplate.formatArgv(request.spec.file.argv, values: [
            "connection_file": file,
            "kernel_id": request.kernelID,
            "resource_dir": request.spec.resourceDirectory.path,
        ])
        guard let executable = Self.resolveExecutable(argv[0], path: request.environment["PATH"]) else {
            throw ProvisionerError("kernel executable '\(argv[0])' of kernelspec '\(request.spec.name)' not found on PATH")
        }
        let log = logFile ?? "\(request.runtimeDirectory)/kernel-\(request.kernelID).log"
        logFile = log
        let fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ProvisionerError("cannot open kernel log \(log): errno \(errno)") }
        let fd2 = dup(fd)

        var platformOptions = PlatformOptions()
        platformOptions.createSession = true
        let options = platformOptions
        var env: [Environment.Key: String] = [:]
        for (k, v) in request.environment {
            if let key = Environment.Key(rawValue: k) { env[key] = v }
        }
        generation += 1
        let gen = generation
        let environment = Environment.custom(env)
        let logger = self.logger
        let workingDirectory = request.workingDirectory.map { FilePath($0) }
        let arguments = Arguments(Array(argv.dropFirst()))
        let spawned: pid_t = try await withCheckedThrowingContinuation { (started: CheckedContinuation<pid_t, any Error>) in
            Task.detached { [self] in
                let resumed = ManagedAtomicFlag()
                do {
                    let result = try await Subprocess.run(
                        .path(FilePath(executable)), arguments: arguments, environment: environment,
                        workingDirectory: workingDirectory, platformOptions: options, input: .none,
                        output: .fileDescriptor(FileDescriptor(rawValue: fd), closeAfterSpawningProcess: true),
                        error: .fileDescriptor(FileDescriptor(rawValue: fd2), closeAfterSpawningProcess: true)
                    ) { execution in
                        resumed.set()
                        started.resume(returning: execution.processIdentifier.value)
                    }
                    let exit: KernelExit = switch result.terminationStatus {
                    case .exited(let code): .exited(code: code)
                    case .signaled(let signal): .signalled(signal: signal)
                    }
                    await self.processEnded(generation: gen, exit: exit)
                } catch {
                    if resumed.isSet {
                        await self.processEnded(generation: gen, exit: .exited(code: -1))
                    } else {
                        close(fd)
                        close(fd2)
                        started.resume(throwing: ProvisionerError("failed to start kernel: \(error)"))
                    }
                }
            }
        }
        pid = spawned
        logger.info("kernel process started", metadata: ["pid": "\(spawned)", "argv": "\(argv.joined(separator: " "))"])
        return info
    }

    private func prepareConnection(_ request: LaunchRequest) throws -> ConnectionInfo {
        if let connectionInfo { return connectionInfo }
        let ports = try PortAllocator.shared.allocate(count: 5)
        let info = ConnectionInfo(ports: ports, key: UUID().uuidString.lowercased(), kernelName: request.spec.name)
        let path = "\(request.runtimeDirectory)/kernel-\(request.kernelID).json"
        let data = try info.encoded()
        // Created 0600 before any byte is written: the key never sits in a readable file.
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ProvisionerError("cannot write connection file \(path): errno \(errno)") }
        defer { close(fd) }
        fchmod(fd, 0o600)
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count else { throw ProvisionerError("short write to \(path)") }
        connectionInfo = info
        connectionFile = path
        return info
    }

    private func processEnded(generation gen: Int, exit: KernelExit) {
        exits[gen] = exit
        if gen == generation { pid = nil }
        var remaining: [(generation: Int, continuation: CheckedContinuation<KernelExit, Never>)] = []
        for waiter in waiters {
            if waiter.generation == gen {
                waiter.continuation.resume(returning: exit)
            } else {
                remaining.append(waiter)
            }
        }
        waiters = remaining
        logger.info("kernel process ended", metadata: ["status": "\(exit)"])
    }

    public func waitForExit() async -> KernelExit {
        let gen = generation
        if let exit = exits[gen] { return exit }
        return await withCheckedContinuation { waiters.append((gen, $0)) }
    }

    public func isAlive() -> Bool { pid != nil && exits[generation] == nil }

    public func signal(_ signal: Int32) {
        guard let pid, exits[generation] == nil else { return }
        // Negative pid: the whole process group (the kernel leads its own session).
        if Glibc.kill(-pid, signal) != 0 {
            _ = Glibc.kill(pid, signal)
        }
    }

    public func terminate() { signal(SIGTERM) }
    public func kill() { signal(SIGKILL) }

    public func cleanup(restart: Bool) {
        guard !restart else { return }
        if let connectionFile { unlink(connectionFile) }
        if let logFile { unlink(logFile) }
        connectionFile = nil
        logFile = nil
    }

    public func recentOutput() -> String {
        guard let logFile, let handle = FileHandle(forReadingAtPath: logFile) else { return "" }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        let start = size > 4096 ? size - 4096 : 0
        try? handle.seek(toOffset: start)
        let data = (try? handle.readToEnd()) ?? Data()
        let text = String(decoding: data, as: UTF8.self)
        return text.split(separator: "\n", omittingEmptySubsequences: true).suffix(15).joined(separator: "\n")
    }

    public func persistentHandle() -> KernelHandle? {
        guard let pid, exits[generation] == nil else { return nil }
        return KernelHandle(backend: "local", pid: pid, connectionFile: connectionFile, logFile: logFile)
    }

    /// Takes over a kernel process started by an earlier gateway, if it still runs and is the
    /// kernel the handle names (its command line mentions the connection file, so a recycled
    /// pid is not mistaken for it). Its end is noticed by polling, since it is not our child.
    public static func attach(handle: KernelHandle, info: ConnectionInfo, logger: Logger) async -> LocalProvisioner? {
        guard handle.backend == "local", let pid = handle.pid, let file = handle.connectionFile,
              Self.processAlive(pid), Self.commandLine(of: pid).contains(file) else { return nil }
        let provisioner = LocalProvisioner(logger: logger)
        await provisioner.adopt(pid: pid, info: info, connectionFile: file, logFile: handle.logFile)
        return provisioner
    }

    private func adopt(pid: pid_t, info: ConnectionInfo, connectionFile: String, logFile: String?) {
        generation += 1
        let gen = generation
        self.pid = pid
        self.connectionInfo = info
        self.connectionFile = connectionFile
        self.logFile = logFile
        Task { [weak self] in
            while Self.processAlive(pid) {
                try? await Task.sleep(for: .milliseconds(500))
            }
            await self?.processEnded(generation: gen, exit: .vanished)
        }
    }

    static func processAlive(_ pid: pid_t) -> Bool {
        if Glibc.kill(pid, 0) == 0 { return true }
        return errno == EPERM
    }

    static func commandLine(of pid: pid_t) -> String {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return "" }
        return String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
    }

    public func describe() -> String {
        pid.map { "local pid \($0)" } ?? "local (not running)"
    }

    /// `execvp`-style lookup of argv[0] in the kernel's PATH.
    static func resolveExecutable(_ name: String, path: String?) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let dirs = (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":")
        for dir in dirs {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}

/// A set-once flag shared between the spawn body and its error path.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}
