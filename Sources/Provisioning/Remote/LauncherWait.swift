import Foundation
import JupyterProtocol

/// How a remote launch ended before the kernel was reachable.
enum LauncherOutcome: Sendable {
    case info(LauncherConnectionInfo)
    /// The launcher (or its job) ended first; the string says how.
    case gone(String)
    case timedOut
}

extension LauncherOutcome {
    /// Waits for the launcher's payload, for `gone` to report the launcher's end, or for `timeout`,
    /// whichever comes first. No polling interval sits between the payload and the return.
    static func wait(kernelID: String, listener: ResponseListener, timeout: Duration,
                      gone: @escaping @Sendable () async -> String) async -> LauncherOutcome {
        let outcome = await firstOf(
            {
                do { return LauncherOutcome.info(try await listener.connectionInfo(for: kernelID)) } catch {
                    // Unregistered by the winner of the race: never the first result in practice.
                    try? await Task.sleep(for: timeout + .seconds(1))
                    return .timedOut
                }
            },
            { LauncherOutcome.gone(await gone()) },
            {
                try? await Task.sleep(for: timeout)
                return .timedOut
            }
        )
        await listener.unregister(kernelID)
        return outcome
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
