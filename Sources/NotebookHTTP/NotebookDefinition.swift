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
    /// What the cell parser noticed and KG would log (operations declared but not implemented).
    public var warnings: [String]

    /// Builds the API with the chosen cell parser; a notebook without endpoints is refused as KG
    /// refuses it ("No endpoints were discovered. Check your notebook to make sure your cells are
    /// annotated correctly.").
    public init(document: NotebookDocument, source: String, forceKernelName: String,
                cellParser: CellParserKind = .annotations) throws(NotebookError) {
        let kernelName = forceKernelName.isEmpty ? document.kernelName : forceKernelName
        guard let kernelName, !kernelName.isEmpty else {
            throw NotebookError("names no kernel (metadata.kernelspec.name) and no kernel name is forced", path: source)
        }
        let parser = EndpointParser(language: document.language)
        let code = document.codeCells
        let found: [(path: String, sources: [String: String])]
        let responses: [String: [String: String]]
        let isAnnotated: (String) -> Bool
        switch cellParser {
        case .annotations:
            found = parser.endpoints(in: code)
            responses = parser.responses(in: code)
            isAnnotated = parser.isAnnotated
            swagger = SwaggerBuilder.build(cells: code, parser: parser, notebookPath: source)
            warnings = []
        case .swagger:
            let swaggerParser: SwaggerCellParser
            do {
                swaggerParser = try SwaggerCellParser(commentPrefix: parser.commentPrefix, cells: document.cells.map(\.source))
            } catch {
                throw NotebookError(error.message, path: source)
            }
            found = swaggerParser.endpoints(in: code)
            responses = swaggerParser.responses(in: code)
            isAnnotated = swaggerParser.isAnnotated
            swagger = swaggerParser.swaggerDocument(title: SwaggerBuilder.title(source))
            warnings = swaggerParser.warnings
        }
        var endpoints: [Endpoint] = []
        for (path, sources) in found {
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
            let example = cellParser == .annotations ? "\(parser.commentPrefix) GET /path" : "\(parser.commentPrefix) operationId: <id declared in the Swagger document>"
            throw NotebookError("has no endpoints: no code cell starts with an annotation such as '\(example)'", path: source)
        }
        self.document = document
        self.source = source
        self.kernelName = kernelName
        self.language = document.language ?? ""
        self.endpoints = endpoints
        self.seedCells = code.filter { !isAnnotated($0) }
    }

    /// The first endpoint (in registration order) whose pattern matches, with its parameters.
    public func match(_ segments: [String]) -> (Endpoint, [(name: String, value: String)])? {
        for endpoint in endpoints {
            if let params = endpoint.pattern.match(segments) { return (endpoint, params) }
        }
        return nil
    }
}

/// KG_CELL_PARSER: which of Kernel Gateway's two cell parsers reads the notebooks.
public enum CellParserKind: String, Sendable, CaseIterable {
    /// `kernel_gateway.notebook_http.cell.parser` (the default): `# GET /path` annotations.
    case annotations = "kernel_gateway.notebook_http.cell.parser"
    /// `kernel_gateway.notebook_http.swagger.parser`: a Swagger document and `# operationId: id` cells.
    case swagger = "kernel_gateway.notebook_http.swagger.parser"
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
