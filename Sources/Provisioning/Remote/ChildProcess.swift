import Foundation
import Logging
import Subprocess
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// A long-running helper process of a remote provisioner (the `ssh` session that runs a remote
/// launcher, an SSH control master): spawned with swift-subprocess in its own session, its
/// output appended to a file, its exit awaited rather than polled.
final class ChildProcess: Sendable {
    let pid: pid_t
    private let state: Mutex<(exit: KernelExit?, waiters: [CheckedContinuation<KernelExit, Never>])>

    private init(pid: pid_t) {
        self.pid = pid
        self.state = Mutex((nil, []))
    }

    /// Starts `argv` with stdout and stderr appended to `logFile` (created 0600), and `input`
    /// (if any) as its whole standard input; without it, stdin is /dev/null.
    static func spawn(_ argv: [String], environment: [String: String]? = nil, logFile: String,
                      input: String? = nil) async throws -> ChildProcess {
        if let input {
            return try await spawn(argv, environment: environment, logFile: logFile, stdin: .string(input))
        }
        return try await spawn(argv, environment: environment, logFile: logFile, stdin: .none)
    }

    private static func spawn<Input: InputProtocol>(_ argv: [String], environment: [String: String]?, logFile: String,
                                                    stdin: Input) async throws -> ChildProcess {
        guard let executable = LocalProvisioner.resolveExecutable(argv[0], path: ProcessInfo.processInfo.environment["PATH"]) else {
            throw ProvisionerError("'\(argv[0])' not found on PATH")
        }
        let fd = open(logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ProvisionerError("cannot open \(logFile): errno \(errno)") }
        let fd2 = dup(fd)
        var options = PlatformOptions()
        options.createSession = true
        let platformOptions = options
        let env: Environment = environment.map { values in
            var custom: [Environment.Key: String] = [:]
            for (k, v) in values { if let key = Environment.Key(rawValue: k) { custom[key] = v } }
            return Environment.custom(custom)
        } ?? .inherit
        let arguments = Arguments(Array(argv.dropFirst()))
        let box = Locked<ChildProcess?>(nil)
        return try await withCheckedThrowingContinuation { (started: CheckedContinuation<ChildProcess, any Error>) in
            Task.detached {
                do {
                    let result = try await Subprocess.run(
                        .path(FilePath(executable)), arguments: arguments, environment: env, platformOptions: platformOptions,
                        input: stdin,
                        output: .fileDescriptor(FileDescriptor(rawValue: fd), closeAfterSpawningProcess: true),
                        error: .fileDescriptor(FileDescriptor(rawValue: fd2), closeAfterSpawningProcess: true)
                    ) { execution in
                        let child = ChildProcess(pid: execution.processIdentifier.value)
                        box.withLock { $0 = child }
                        started.resume(returning: child)
                    }
                    let exit: KernelExit = switch result.terminationStatus {
                    case .exited(let code): .exited(code: code)
                    case .signaled(let signal): .signalled(signal: signal)
                    }
                    box.withLock { $0 }?.ended(exit)
                } catch {
                    if let child = box.withLock({ $0 }) {
                        child.ended(.exited(code: -1))
                    } else {
                        close(fd)
                        close(fd2)
                        started.resume(throwing: ProvisionerError("failed to start \(argv[0]): \(error)"))
                    }
                }
            }
        }
    }

    private func ended(_ exit: KernelExit) {
        let waiters = state.withLock { s -> [CheckedContinuation<KernelExit, Never>] in
            s.exit = exit
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: exit) }
    }

    var exitStatus: KernelExit? { state.withLock { $0.exit } }
    var isRunning: Bool { exitStatus == nil }

    func waitForExit() async -> KernelExit {
        await withCheckedContinuation { c in
            let done = state.withLock { s -> KernelExit? in
                if let e = s.exit { return e }
                s.waiters.append(c)
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }

    /// Signals the helper's process group (it leads its own session).
    func signal(_ sig: Int32) {
        guard isRunning else { return }
        if Glibc.kill(-pid, sig) != 0 { _ = Glibc.kill(pid, sig) }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    func stop(grace: Duration = .seconds(2)) async {
        guard isRunning else { return }
        signal(SIGTERM)
        let exited = await firstOf({ _ = await self.waitForExit(); return true }, { try? await Task.sleep(for: grace); return false })
        if !exited {
            signal(SIGKILL)
            _ = await waitForExit()
        }
    }
}

/// Runs a short command (sbatch, squeue, scancel, `ssh host kill`) to completion and returns its
/// exit and combined output. The command is killed when `timeout` passes.
enum ShortCommand {
    struct Result: Sendable {
        var exit: KernelExit
        var output: String
        var succeeded: Bool { exit == .exited(code: 0) }
    }

    static func run(_ argv: [String], environment: [String: String]? = nil, timeout: Duration = .seconds(30)) async throws -> Result {
        guard let executable = LocalProvisioner.resolveExecutable(argv[0], path: ProcessInfo.processInfo.environment["PATH"]) else {
            throw ProvisionerError("'\(argv[0])' not found on PATH")
        }
        let env: Environment = environment.map { values in
            var custom: [Environment.Key: String] = [:]
            for (k, v) in values { if let key = Environment.Key(rawValue: k) { custom[key] = v } }
            return Environment.custom(custom)
        } ?? .inherit
        let arguments = Arguments(Array(argv.dropFirst()))
        let outcome: Result? = try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask {
                var options = PlatformOptions()
                options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: .milliseconds(500))]
                let r = try await Subprocess.run(.path(FilePath(executable)), arguments: arguments, environment: env,
                                                 platformOptions: options, input: .none,
                                                 output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
                let exit: KernelExit = switch r.terminationStatus {
                case .exited(let code): .exited(code: code)
                case .signaled(let signal): .signalled(signal: signal)
                }
                return Result(exit: exit, output: r.standardOutput + r.standardError)
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        guard let outcome else {
            throw ProvisionerError("'\(argv.prefix(3).joined(separator: " "))' did not finish within \(timeout)")
        }
        return outcome
    }
}

/// A value shared between tasks (a `Mutex` cannot be captured by escaping closures).
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

/// The first of several async results; the others are left to finish on their own (process
/// exits and launcher payloads cannot be cancelled, and a task group would wait for them).
func firstOf<T: Sendable>(_ operations: (@Sendable () async -> T)...) async -> T {
    let gate = Locked(false)
    return await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        for operation in operations {
            Task {
                let value = await operation()
                let first = gate.withLock { done in
                    defer { done = true }
                    return !done
                }
                if first { continuation.resume(returning: value) }
            }
        }
    }
}
