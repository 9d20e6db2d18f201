/// Kernel Gateway's second cell parser (`KG_CELL_PARSER=kernel_gateway.notebook_http.swagger.parser`,
/// `notebook_http/swagger/parser.py` `SwaggerCellParser`): the API is declared by a Swagger 2.0
/// document in a fenced block of a cell, and code cells name the operation they implement.
///
/// - Any cell (KG checks markdown and code alike) whose first fenced block parses as a JSON object
///   with a `swagger` member contributes it; several are merged member by member, later ones
///   winning (`dict.update`).
/// - A code cell starting with `{prefix}\s*operationId:\s*ID` implements operation ID;
///   `{prefix}\s*ResponseInfo\s+operationId:\s*ID` is its response cell. Cells naming the same
///   operation are concatenated, each followed by `\n`.
/// - An operation's path is its Swagger path with `/:name` appended for each of its parameters,
///   as KG does (`/foo` with parameter `bar` is served at `/foo/:bar`).
///
/// Two deliberate differences from KG: verbs are matched case-insensitively (KG keys its handlers
/// by the Swagger document's lowercase verbs and compares them with tornado's uppercase method,
/// so every request would be a 405), and parameters declared `in` query, header, body or formData
/// do not become path segments (KG appends every named parameter). A notebook without a Swagger
/// document is refused at load (KG fails on the first request with a KeyError).
public struct SwaggerCellParser: Sendable {
    public let commentPrefix: String
    /// The merged Swagger document.
    public let document: OrderedJSON
    /// Operations declared but never implemented, and cells naming undeclared operations (KG logs these).
    public let warnings: [String]

    public init(commentPrefix: String, cells: [String]) throws(NotebookError) {
        self.commentPrefix = commentPrefix
        var members: [(key: String, value: OrderedJSON)] = []
        for cell in cells {
            guard case .object(let found)? = Self.swaggerlet(in: cell) else { continue }
            for member in found {
                if let i = members.firstIndex(where: { $0.key == member.key }) { members[i].value = member.value } else { members.append(member) }
            }
        }
        guard !members.isEmpty else {
            throw NotebookError("uses the Swagger cell parser but no cell holds a Swagger document (a fenced JSON block with a \"swagger\" member)", path: "")
        }
        document = .object(members)
        var warnings: [String] = []
        let declared = Self.operations(in: document).map(\.id)
        var implemented: [String] = []
        for cell in cells {
            if let id = Self.operationID(cell, prefix: commentPrefix, keyword: nil) { implemented.append(id) }
        }
        for id in declared where !implemented.contains(id) { warnings.append("Operation \(id) was declared but not referenced in a cell") }
        for id in implemented where !declared.contains(id) { warnings.append("Operation \(id) was referenced in a cell but not declared") }
        self.warnings = warnings
    }

    /// `_swaggerlet_from_markdown`: the first fenced block of a cell of more than two lines (or
    /// the whole cell), parsed as JSON, if it has a `swagger` member.
    static func swaggerlet(in source: String) -> OrderedJSON? {
        var lines = source.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }  // Python's splitlines drops the final empty piece
        if lines.count > 2 {
            if let open = lines.firstIndex(where: { $0.hasPrefix("```") }) { lines = Array(lines[(open + 1)...]) }
            if let close = lines.firstIndex(where: { $0.hasPrefix("```") }) { lines = Array(lines[..<close]) }
        }
        guard let json = OrderedJSON.parse(Array(lines.joined().utf8)), json["swagger"] != nil else { return nil }
        return json
    }

    /// `re.match(r"{prefix}\s*operationId:\s*(.*)")` (or with `ResponseInfo\s+` before `operationId`).
    static func operationID(_ source: String, prefix: String, keyword: String?) -> String? {
        guard source.hasPrefix(prefix) else { return nil }
        var rest = Substring(source.dropFirst(prefix.count)).drop { $0.isWhitespace }
        if let keyword {
            guard rest.hasPrefix(keyword) else { return nil }
            rest = rest.dropFirst(keyword.count)
            guard rest.first?.isWhitespace == true else { return nil }
            rest = rest.drop { $0.isWhitespace }
        }
        guard rest.hasPrefix("operationId:") else { return nil }
        rest = rest.dropFirst("operationId:".count).drop { $0.isWhitespace && $0 != "\n" }
        return rest.prefix { $0 != "\n" && $0 != "\r\n" }.trimmingWhitespace()
    }

    public func operationID(of source: String) -> String? { Self.operationID(source, prefix: commentPrefix, keyword: nil) }
    public func responseOperationID(of source: String) -> String? { Self.operationID(source, prefix: commentPrefix, keyword: "ResponseInfo") }

    /// Seeding skips operation and ResponseInfo cells (`should_seed_cell`).
    public func isAnnotated(_ source: String) -> Bool {
        operationID(of: source) != nil || responseOperationID(of: source) != nil
    }

    /// Declared operations in document order: id, uppercase verb, served path.
    static func operations(in document: OrderedJSON) -> [(id: String, verb: String, path: String)] {
        guard case .object(let paths)? = document["paths"] else { return [] }
        var found: [(String, String, String)] = []
        for (path, item) in paths {
            guard case .object(let verbs) = item else { continue }
            for (verb, operation) in verbs {
                guard let id = operation["operationId"]?.stringValue else { continue }
                var served = path
                if case .array(let parameters)? = operation["parameters"] {
                    for parameter in parameters {
                        guard let name = parameter["name"]?.stringValue else { continue }
                        let location = parameter["in"]?.stringValue ?? "path"
                        if location == "path" { served += "/:" + name }
                    }
                }
                found.append((id, verb.uppercased(), served))
            }
        }
        return found
    }

    private func table(_ cells: [String], response: Bool) -> (order: [String], table: [String: [String: String]]) {
        var sources: [String: String] = [:]
        for cell in cells {
            guard let id = response ? responseOperationID(of: cell) : operationID(of: cell) else { continue }
            sources[id, default: ""] += cell + "\n"
        }
        var order: [String] = []
        var table: [String: [String: String]] = [:]
        for op in Self.operations(in: document) {
            guard let source = sources[op.id] else { continue }
            if table[op.path] == nil {
                order.append(op.path)
                table[op.path] = [:]
            }
            table[op.path]![op.verb] = source
        }
        return (order, table)
    }

    /// Endpoints ordered as `EndpointParser.endpoints` orders them (`first_path_param_index`, reversed).
    public func endpoints(in cells: [String]) -> [(path: String, sources: [String: String])] {
        let (order, table) = table(cells, response: false)
        let sorted = order.enumerated().sorted { a, b in
            let (ia, ib) = (EndpointParser.firstParamIndex(a.element), EndpointParser.firstParamIndex(b.element))
            return ia != ib ? ia > ib : a.offset < b.offset
        }
        return sorted.map { ($0.element, table[$0.element]!) }
    }

    public func responses(in cells: [String]) -> [String: [String: String]] {
        table(cells, response: true).table
    }

    /// `GET /_api/spec/swagger.json`: the declared document, with the notebook's name as
    /// `info.title` when `info` has none (`SwaggerSpecBuilder.set_default_title`).
    public func swaggerDocument(title: String) -> String {
        guard case .object(var members) = document,
              let i = members.firstIndex(where: { $0.key == "info" }), case .object(var info) = members[i].value,
              !info.contains(where: { $0.key == "title" }) else { return document.pythonDumps() }
        info.append(("title", .string(title)))
        members[i].value = .object(info)
        return OrderedJSON.object(members).pythonDumps()
    }
}
