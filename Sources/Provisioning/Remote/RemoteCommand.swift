import Foundation
import JupyterProtocol

/// Builds the command line a remote launcher runs with, shared by the SSH and Slurm backends.
enum RemoteCommand {
    /// POSIX shell single-quoting: safe for any value without NUL.
    static func quote(_ s: String) -> String {
        if !s.isEmpty, s.unicodeScalars.allSatisfy({ safe.contains($0) }) { return s }
        return "'" + s.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
    }

    private static let safe = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%")

    /// Names that describe the gateway's own host, session or configuration: never sent to a
    /// remote kernel. `JPY_PARENT_PID` in particular names a process on the gateway's host.
    static func isHostLocal(_ name: String) -> Bool {
        if hostLocal.contains(name) { return true }
        return name.hasPrefix("SSH_") || name.hasPrefix("XDG_") || name.hasPrefix("EG_") || name.hasPrefix("KG_")
            || name.hasPrefix("GANYMEDE_") || name.hasPrefix("SLURM_")
    }

    private static let hostLocal: Set<String> = [
        "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "HOSTNAME", "TERM", "MAIL", "DISPLAY", "JPY_PARENT_PID",
        "JUPYTER_RUNTIME_DIR", "TMPDIR", "_",
    ]

    /// The environment a remote kernel gets: the kernel's environment without host-local names.
    static func environment(_ env: [String: String]) -> [(String, String)] {
        env.filter { !isHostLocal($0.key) && !$0.value.contains("\0") }.sorted { $0.key < $1.key }
    }

    /// The kernelspec argv with EG's launcher placeholders filled in.
    static func argv(spec: KernelSpec, kernelID: String, responseAddress: String, publicKey: String, portRange: String,
                     connectionFile: String) -> [String] {
        KernelSpecTemplate.formatArgv(spec.file.argv, values: [
            "kernel_id": kernelID, "response_address": responseAddress, "public_key": publicKey,
            "port_range": portRange, "connection_file": connectionFile, "resource_dir": spec.resourceDirectory.path,
        ])
    }

    /// `mkdir -p D; echo $$ > D/kernel-ID.pid; exec env K=V... argv >> D/kernel-ID.log 2>&1 </dev/null`:
    /// the launcher replaces the shell, so it keeps the shell's pid and process group (recorded
    /// for signals and clean-up) and its exit ends the SSH session.
    /// With `keyOnStdin` the launcher keeps the session's stdin, on which the gateway writes
    /// its launch key (`LaunchSecret`); it reads that line and lets go of stdin itself.
    static func shellLine(argv: [String], environment: [(String, String)], logDirectory: String, kernelID: String,
                          limits prelude: String = "", keyOnStdin: Bool = false) -> String {
        let dir = quote(logDirectory)
        let base = "\(logDirectory)/kernel-\(kernelID)"
        var line = "mkdir -p \(dir) && echo $$ > \(quote(base + ".pid")) && "
        // Resource limits (RemoteResourceLimits) leave a CPU-affinity prefix, if any, in $t.
        line += prelude.isEmpty ? "exec env" : "{ \(prelude)true; } && exec $t env"
        for (k, v) in environment { line += " " + quote("\(k)=\(v)") }
        line += " " + argv.map(quote).joined(separator: " ")
        line += " >> \(quote(base + ".log")) 2>&1" + (keyOnStdin ? "" : " < /dev/null")
        return line
    }
}
