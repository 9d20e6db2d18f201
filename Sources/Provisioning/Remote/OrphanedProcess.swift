import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Helper processes an earlier gateway left behind when it ended abruptly (SIGKILL): its `ssh`
/// sessions and control masters run on, reparented to init, until someone stops them.
enum OrphanedProcess {
    /// Stops `pid` (SIGTERM, then SIGKILL after two seconds) if it still runs and its command
    /// line mentions `marker`, so that a recycled pid belonging to something else is left alone.
    static func stop(_ pid: pid_t, mentioning marker: String) async {
        guard pid > 1, !marker.isEmpty, LocalProvisioner.processAlive(pid),
              LocalProvisioner.commandLine(of: pid).contains(marker) else { return }
        kill(pid, SIGTERM)
        for _ in 0..<40 {
            if !LocalProvisioner.processAlive(pid) { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        kill(pid, SIGKILL)
    }
}
