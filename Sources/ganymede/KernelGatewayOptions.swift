import ArgumentParser
import Foundation
import GatewayServer
import Logging
import NotebookHTTP
import ServiceLifecycle

/// Kernel Gateway's personality settings (`KG_API`, `KG_SEED_URI`, `KG_PRESPAWN_COUNT`,
/// `KG_FORCE_KERNEL_NAME`, `KG_ALLOW_NOTEBOOK_DOWNLOAD`) and Ganymede's notebook-http additions.
struct KernelGatewayOptions: ParsableArguments {
    @Option(name: .customLong("api"), help: "jupyter-websocket (default) or notebook-http; KG's module names kernel_gateway.jupyter_websocket / kernel_gateway.notebook_http work too. Env: KG_API.")
    var api: String?
    @Option(name: .customLong("seed-uri"), help: "Notebook (local path, file:// URI or http(s) URL). jupyter-websocket: its code cells run in every new kernel of its kernelspec. notebook-http: the notebook served at the root. Env: KG_SEED_URI.")
    var seedURI: String?
    @Option(name: .customLong("prespawn-count"), help: "jupyter-websocket: kernels kept started (and seeded) for POST /api/kernels. notebook-http: kernels per notebook (default 1). Env: KG_PRESPAWN_COUNT.")
    var prespawnCount: Int?
    @Option(name: .customLong("force-kernel-name"), help: "Kernelspec used whatever a request or notebook names. Env: KG_FORCE_KERNEL_NAME.")
    var forceKernelName: String?
    @Option(name: .customLong("allow-notebook-download"), help: "notebook-http: serve <prefix>/_api/source (true|false). Env: KG_ALLOW_NOTEBOOK_DOWNLOAD. Default false.")
    var allowNotebookDownload: String?
    @Option(name: .customLong("static-path"), help: "notebook-http: serve the files of this directory at /public/. Env: KG_STATIC_PATH.")
    var staticPath: String?
    @Option(name: .customLong("notebook"), help: "notebook-http: serve a notebook under a URL prefix, [PREFIX=]PATH (or URL), e.g. /sales=dash/sales.ipynb (repeatable; implies --api notebook-http). Env: GANYMEDE_NOTEBOOKS (comma list).")
    var notebooks: [String] = []
    @Option(name: .customLong("cell-parser"), help: "notebook-http: kernel_gateway.notebook_http.cell.parser (annotations, default) or kernel_gateway.notebook_http.swagger.parser. Env: KG_CELL_PARSER.")
    var cellParser: String?
    @Option(name: .customLong("notebook-http-timeout"), help: "notebook-http: seconds a request may take; a cell line '# Timeout: <s>' overrides it per endpoint. Env: GANYMEDE_NOTEBOOK_HTTP_TIMEOUT. Default 60.")
    var requestTimeout: Double?
    @Option(name: .customLong("notebook-http-tracebacks"), help: "notebook-http: add the traceback to the 500 body of a failing cell (true|false). Env: GANYMEDE_NOTEBOOK_HTTP_TRACEBACKS. Default false.")
    var tracebacks: String?
    @Option(name: .customLong("notebook-reload-interval"), help: "notebook-http: seconds between checks of the notebook files for changes; 0 disables reloading. Env: GANYMEDE_NOTEBOOK_RELOAD_INTERVAL. Default 1.")
    var reloadInterval: Double?

    enum Mode { case jupyterWebsocket, notebookHTTP }

    /// Applies the settings that belong to the gateway configuration (the forced kernel name).
    func apply(_ settings: Settings, to c: inout GatewayConfiguration) {
        c.forceKernelName = forceKernelName ?? settings.string("force_kernel_name", env: ["KG_FORCE_KERNEL_NAME"]) ?? ""
    }

    func mode(_ settings: Settings, mounts: [String]) throws -> Mode {
        guard let raw = api ?? settings.string("api", env: ["KG_API"]) else {
            return mounts.isEmpty ? .jupyterWebsocket : .notebookHTTP
        }
        switch raw {
        case "kernel_gateway.jupyter_websocket", "jupyter-websocket", "jupyter_websocket":
            guard mounts.isEmpty else { throw ValidationError("--notebook needs --api notebook-http") }
            return .jupyterWebsocket
        case "kernel_gateway.notebook_http", "notebook-http", "notebook_http":
            return .notebookHTTP
        default:
            throw ValidationError("API module \(raw) not found (use jupyter-websocket or notebook-http)")
        }
    }

    /// The services to run: the plain gateway, or with KG's seed/prespawn hook, or the
    /// notebook-http personality. Throws for settings or notebooks that cannot be served.
    func services(settings: Settings, gateway: Gateway, logger: Logger,
                  onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> [any Service] {
        let seedURI = seedURI ?? settings.string("seed_uri", env: ["KG_SEED_URI"])
        let mounts = notebooks + Settings.list(settings.string("notebooks", env: []))
        let prespawn = try prespawnCount ?? settings.int("prespawn_count", env: ["KG_PRESPAWN_COUNT"])
        if let prespawn, prespawn < 0 { throw ValidationError("prespawn count must not be negative") }
        if let prespawn, let max = gateway.configuration.maxKernels, prespawn > max {
            // KG: "Cannot prespawn N kernels; more than max kernels M".
            throw ValidationError("Cannot prespawn \(prespawn) kernels; more than max kernels \(max)")
        }
        switch try mode(settings, mounts: mounts) {
        case .jupyterWebsocket:
            var seed: SeedingStartHook.Seed?
            if let seedURI {
                seed = try await SeedingStartHook.loadSeed(uri: seedURI, configuration: gateway.configuration, specs: gateway.registry.specs)
            }
            var pool: PrespawnPool?
            if let prespawn, prespawn > 0 {
                let forced = gateway.configuration.forceKernelName
                let name = !forced.isEmpty ? forced : (seed?.kernelName ?? gateway.configuration.defaultKernelName)
                pool = PrespawnPool(kernelName: name, count: prespawn, registry: gateway.registry, logger: logger)
            }
            guard seed != nil || pool != nil else { return gateway.makeServices(onServerRunning: onServerRunning) }
            await gateway.registry.setStartHook(SeedingStartHook(seed: seed, pool: pool))
            let extra: [any Service] = pool.map { [PrespawnService(pool: $0)] } ?? []
            return extra + gateway.makeServices(onServerRunning: onServerRunning)
        case .notebookHTTP:
            var c = NotebookHTTPConfiguration()
            if let seedURI { c.mounts.append(.init(prefix: "/", path: seedURI)) }
            c.mounts += mounts.map(NotebookHTTPConfiguration.Mount.parse)
            c.prespawnCount = max(1, prespawn ?? 1)
            c.forceKernelName = gateway.configuration.forceKernelName
            if let raw = cellParser ?? settings.string("cell_parser", env: ["KG_CELL_PARSER"]) {
                // KG imports the module by name; these are the two it ships.
                guard let kind = CellParserKind(rawValue: raw) else {
                    throw ValidationError("cell parser \(raw) not found (use one of: \(CellParserKind.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                c.cellParser = kind
            }
            if let v = try allowNotebookDownload.map(Settings.parseBool)
                ?? settings.bool("allow_notebook_download", env: ["KG_ALLOW_NOTEBOOK_DOWNLOAD"]) {
                c.allowNotebookDownload = v
            }
            if let s = try requestTimeout ?? settings.double("notebook_http_timeout", env: []) {
                guard s > 0 else { throw ValidationError("--notebook-http-timeout must be positive") }
                c.requestTimeout = .milliseconds(Int64(s * 1000))
            }
            if let v = try tracebacks.map(Settings.parseBool) ?? settings.bool("notebook_http_tracebacks", env: []) {
                c.exposeTracebacks = v
            }
            if let s = try reloadInterval ?? settings.double("notebook_reload_interval", env: []) {
                c.reloadInterval = s > 0 ? .milliseconds(Int64(s * 1000)) : nil
            }
            c.maxBodySize = gateway.configuration.maxRequestBodySize
            c.staticPath = staticPath ?? settings.string("static_path", env: ["KG_STATIC_PATH"])
            do {
                let personality = try await NotebookHTTPPersonality(settings: c, gateway: gateway)
                return gateway.makeServices(personality: personality, onServerRunning: onServerRunning)
            } catch {
                throw ValidationError(error.description)
            }
        }
    }
}
