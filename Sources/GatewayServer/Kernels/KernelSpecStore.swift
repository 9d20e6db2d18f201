import Foundation
import JupyterProtocol
import Logging
import Synchronization

/// The kernelspecs the gateway serves, discovered once at start-up.
public final class KernelSpecStore: Sendable {
    private let state: Mutex<[String: KernelSpec]>
    private let searched: Mutex<[URL]>
    private let environment: [String: String]
    private let logger: Logger

    public var directories: [URL] { searched.withLock { $0 } }

    public init(configuration: GatewayConfiguration, environment: [String: String], logger: Logger) {
        self.environment = environment
        self.logger = logger
        let dirs = Self.searchPath(configuration, environment)
        searched = Mutex(dirs)
        state = Mutex(Self.discover(dirs, logger: logger))
    }

    /// Discovers again (SIGHUP): new, changed and removed kernelspecs take effect for the next
    /// start; running kernels keep the spec they were started with. Returns the names found.
    @discardableResult
    public func reload(configuration: GatewayConfiguration) -> [String] {
        let dirs = Self.searchPath(configuration, environment)
        let specs = Self.discover(dirs, logger: logger)
        searched.withLock { $0 = dirs }
        state.withLock { $0 = specs }
        return specs.keys.sorted()
    }

    private static func searchPath(_ configuration: GatewayConfiguration, _ environment: [String: String]) -> [URL] {
        configuration.kernelSpecDirectories.map { URL(fileURLWithPath: $0) }
            + KernelSpecDiscovery.jupyterKernelDirectories(environment: environment)
            + bundledDirectories()
    }

    private static func discover(_ dirs: [URL], logger: Logger) -> [String: KernelSpec] {
        let (specs, problems) = KernelSpecDiscovery(kernelDirectories: dirs).discover()
        for problem in problems { logger.warning("ignored kernelspec", metadata: ["problem": "\(problem)"]) }
        return specs
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
