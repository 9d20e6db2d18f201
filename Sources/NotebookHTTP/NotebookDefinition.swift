import Foundation

/// One notebook turned into an HTTP API: its endpoints in matching order, their ResponseInfo
/// cells and timeouts, the seed cells every pool kernel runs first, and the swagger document.
public struct NotebookDefinition: Sendable {
    public struct Endpoint: Sendable {
        public var pattern: PathPattern
        /// Verb → concatenated cell source.
        public var sources: [String: String]
        /// Verb → concatenated ResponseInfo source.
        public var responseSources: [String: String]
        /// Verb → timeout written in the cell (`# Timeout: 5`).
        public var timeouts: [String: Duration]
    }

    public var document: NotebookDocument
    /// The file or URI it was loaded from (the swagger title comes from its name).
    public var source: String
    public var kernelName: String
    public var language: String
    public var endpoints: [Endpoint]
    /// Code cells that are neither endpoints nor ResponseInfo cells (`should_seed_cell`).
    public var seedCells: [String]
    /// `GET /_api/spec/swagger.json`, built once per definition as KG does.
    public var swagger: String

    /// Builds the API; a notebook without endpoints is refused as KG refuses it ("No endpoints
    /// were discovered. Check your notebook to make sure your cells are annotated correctly.").
    public init(document: NotebookDocument, source: String, forceKernelName: String) throws(NotebookError) {
        let kernelName = forceKernelName.isEmpty ? document.kernelName : forceKernelName
        guard let kernelName, !kernelName.isEmpty else {
            throw NotebookError("names no kernel (metadata.kernelspec.name) and no kernel name is forced", path: source)
        }
        let parser = EndpointParser(language: document.language)
        let code = document.codeCells
        let responses = parser.responses(in: code)
        var endpoints: [Endpoint] = []
        for (path, sources) in parser.endpoints(in: code) {
            let pattern: PathPattern
            do {
                pattern = try PathPattern(path)
            } catch {
                throw NotebookError(error.message, path: source)
            }
            var timeouts: [String: Duration] = [:]
            for (verb, text) in sources {
                if let t = parser.timeout(in: text) { timeouts[verb] = t }
            }
            endpoints.append(Endpoint(pattern: pattern, sources: sources, responseSources: responses[path] ?? [:], timeouts: timeouts))
        }
        guard !endpoints.isEmpty else {
            throw NotebookError("has no endpoints: no code cell starts with an annotation such as '\(parser.commentPrefix) GET /path'",
                                path: source)
        }
        self.document = document
        self.source = source
        self.kernelName = kernelName
        self.language = document.language ?? ""
        self.endpoints = endpoints
        self.seedCells = code.filter { !parser.isAnnotated($0) }
        self.swagger = SwaggerBuilder.build(cells: code, parser: parser, notebookPath: source)
    }

    /// The first endpoint (in registration order) whose pattern matches, with its parameters.
    public func match(_ segments: [String]) -> (Endpoint, [(name: String, value: String)])? {
        for endpoint in endpoints {
            if let params = endpoint.pattern.match(segments) { return (endpoint, params) }
        }
        return nil
    }
}

/// KG's generated swagger (`notebook_http/swagger/builders.py` `SwaggerSpecBuilder`):
/// `{"swagger": "2.0", "paths": {path: {verb: {"responses": {"200": {"description": "Success"}}}}},
/// "info": {"version": "0.0.0", "title": <file name up to its first dot>}}`.
enum SwaggerBuilder {
    static func build(cells: [String], parser: EndpointParser, notebookPath: String) -> String {
        var paths: [(key: String, value: OrderedJSON)] = []
        let operation = OrderedJSON.object([("responses", .object([("200", .object([("description", .string("Success"))]))]))])
        for cell in cells {
            guard let (verb, path) = parser.endpoint(of: cell) else { continue }
            let lower = verb.lowercased()
            if let i = paths.firstIndex(where: { $0.key == path }), case .object(var verbs) = paths[i].value {
                if let j = verbs.firstIndex(where: { $0.key == lower }) {
                    verbs[j].value = operation
                } else {
                    verbs.append((lower, operation))
                }
                paths[i].value = .object(verbs)
            } else {
                paths.append((path, .object([(lower, operation)])))
            }
        }
        let spec = OrderedJSON.object([
            ("swagger", .string("2.0")),
            ("paths", .object(paths)),
            ("info", .object([("version", .string("0.0.0")), ("title", .string(title(notebookPath)))])),
        ])
        return spec.pythonDumps()
    }

    /// `basename.split(".")[0] if basename.find(".") > 0 else basename`.
    static func title(_ path: String) -> String {
        let base = String(NotebookDocument.localPath(path).split(separator: "/", omittingEmptySubsequences: false).last ?? "")
        guard let dot = base.firstIndex(of: "."), dot > base.startIndex else { return base }
        return String(base[..<dot])
    }
}
