/// Settings of the notebook-http personality (KG's `NotebookHTTPPersonality` and
/// `KernelGatewayApp` traits, plus Ganymede's mounts, timeouts and reloading).
public struct NotebookHTTPConfiguration: Sendable {
    /// A notebook served under a URL prefix (after the base URL); "/" serves it at the root,
    /// which is what `KG_SEED_URI` does.
    public struct Mount: Sendable, Equatable {
        public var prefix: String
        public var path: String

        public init(prefix: String, path: String) {
            self.prefix = prefix
            self.path = path
        }

        /// Parses `[PREFIX=]PATH` (`--notebook /sales=dash/sales.ipynb`); no prefix means "/".
        public static func parse(_ spec: String) -> Mount {
            if spec.hasPrefix("/"), let eq = spec.firstIndex(of: "=") {
                return Mount(prefix: normalizePrefix(String(spec[..<eq])), path: String(spec[spec.index(after: eq)...]))
            }
            return Mount(prefix: "/", path: spec)
        }

        /// "/x/y" form without a trailing slash; "/" for the root.
        public static func normalizePrefix(_ raw: String) -> String {
            let parts = raw.split(separator: "/").filter { !$0.isEmpty }
            return "/" + parts.joined(separator: "/")
        }
    }

    public var mounts: [Mount] = []
    /// Kernels per notebook (KG_PRESPAWN_COUNT; at least 1, as KG's pool).
    public var prespawnCount = 1
    /// KG_FORCE_KERNEL_NAME: overrides the notebook's kernelspec.
    public var forceKernelName = ""
    /// KG_CELL_PARSER: annotations (default) or a Swagger document.
    public var cellParser: CellParserKind = .annotations
    /// KG_ALLOW_NOTEBOOK_DOWNLOAD: serve `<prefix>/_api/source`.
    public var allowNotebookDownload = false
    /// KG_STATIC_PATH: files under this directory are served at `/public/…` (under the base URL).
    public var staticPath: String?
    /// Default time a request may take (waiting for a kernel, and running); a cell's
    /// `# Timeout: <seconds>` line overrides it for its endpoint.
    public var requestTimeout: Duration = .seconds(60)
    /// Append the traceback to the `Error <ename>: <evalue>` body of a failing cell.
    public var exposeTracebacks = false
    /// How often notebook files are checked for changes; nil: never reloaded.
    public var reloadInterval: Duration? = .seconds(1)
    /// How long one seed cell may run when a kernel is prepared.
    public var seedTimeout: Duration = .seconds(120)
    /// The gateway's auth token: kept out of the `REQUEST` a kernel sees.
    public var gatewayToken = ""
    /// Largest accepted request body (the gateway's REST limit).
    public var maxBodySize = 1 << 20

    public init() {}
}
