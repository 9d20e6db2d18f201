import Foundation
import JupyterProtocol
import Logging
import Synchronization

/// The kernelspecs the gateway serves, discovered once at start-up.
public final class KernelSpecStore: Sendable {
    private let state: Mutex<[String: KernelSpec]>
    public let directories: [URL]

    public init(configuration: GatewayConfiguration, environment: [String: String], logger: Logger) {
        var dirs = configuration.kernelSpecDirectories.map { URL(fileURLWithPath: $0) }
        dirs += KernelSpecDiscovery.jupyterKernelDirectories(environment: environment)
        dirs += Self.bundledDirectories()
        directories = dirs
        let (specs, problems) = KernelSpecDiscovery(kernelDirectories: dirs).discover()
        for problem in problems { logger.warning("ignored kernelspec", metadata: ["problem": "\(problem)"]) }
        state = Mutex(specs)
    }

    /// The repository's `kernelspecs/`: next to the working directory or up from the
    /// executable (`.build/<config>/ganymede`), or installed under share/ganymede.
    static func bundledDirectories() -> [URL] {
        var candidates: [URL] = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("kernelspecs")]
        var exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(exe.appendingPathComponent("kernelspecs"))
            candidates.append(exe.appendingPathComponent("share/ganymede/kernelspecs"))
            exe = exe.deletingLastPathComponent()
        }
        var seen = Set<String>()
        return candidates.filter { url in
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else { return false }
            return seen.insert(url.standardizedFileURL.path).inserted
        }
    }

    public var all: [String: KernelSpec] { state.withLock { $0 } }

    public func spec(named name: String) -> KernelSpec? {
        state.withLock { $0[name.lowercased()] }
    }
}
