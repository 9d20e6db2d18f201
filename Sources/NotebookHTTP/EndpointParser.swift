/// Kernel Gateway's cell annotations (`notebook_http/cell/parser.py` `APICellParser`).
///
/// A code cell whose source *starts* with `{prefix}\s+(GET|PUT|POST|DELETE)\s+(/.*)` is an
/// endpoint (`re.match`: anchored at the start, the path is the rest of that line, stripped);
/// `{prefix}\s+ResponseInfo\s+VERB\s+/path` marks its response-metadata cell. Cells with the same
/// verb and path are concatenated in notebook order, each followed by `\n`.
public struct EndpointParser: Sendable {
    public static let verbs = ["GET", "PUT", "POST", "DELETE"]
    public let commentPrefix: String

    /// KG's `comment_prefix` table is `{"scala": "//", None: "#"}`; the other `//` and `--`
    /// languages are additions (a `#` annotation could never have been a comment in them).
    public static func commentPrefix(language: String?) -> String {
        switch language?.lowercased() {
        case "scala", "javascript", "typescript", "java", "kotlin", "go", "rust", "c", "c++", "c#", "csharp", "swift":
            "//"
        case "sql", "haskell", "lua":
            "--"
        default:
            "#"
        }
    }

    public init(language: String?) {
        commentPrefix = Self.commentPrefix(language: language)
    }

    public init(commentPrefix: String) {
        self.commentPrefix = commentPrefix
    }

    /// `(verb, path)` of an endpoint cell, or nil.
    public func endpoint(of source: String) -> (verb: String, path: String)? {
        match(source, keyword: nil)
    }

    /// `(verb, path)` of a `ResponseInfo` cell, or nil.
    public func responseInfo(of source: String) -> (verb: String, path: String)? {
        match(source, keyword: "ResponseInfo")
    }

    /// Seeding skips endpoint and ResponseInfo cells (`NotebookHTTPPersonality.should_seed_cell`).
    public func isAnnotated(_ source: String) -> Bool {
        endpoint(of: source) != nil || responseInfo(of: source) != nil
    }

    private func match(_ source: String, keyword: String?) -> (verb: String, path: String)? {
        guard source.hasPrefix(commentPrefix) else { return nil }
        var rest = Substring(source.dropFirst(commentPrefix.count))
        guard Self.dropWhitespace(&rest) else { return nil }
        if let keyword {
            guard rest.hasPrefix(keyword) else { return nil }
            rest = rest.dropFirst(keyword.count)
            guard Self.dropWhitespace(&rest) else { return nil }
        }
        guard let verb = Self.verbs.first(where: { rest.hasPrefix($0) }) else { return nil }
        rest = rest.dropFirst(verb.count)
        guard Self.dropWhitespace(&rest), rest.first == "/" else { return nil }
        let line = rest.prefix { $0 != "\n" && $0 != "\r\n" }
        return (verb, line.trimmingWhitespace())
    }

    /// Python's `\s+`: at least one whitespace character (newlines included).
    private static func dropWhitespace(_ s: inout Substring) -> Bool {
        let count = s.prefix { $0.isWhitespace }.count
        s = s.dropFirst(count)
        return count > 0
    }

    /// Depth of the first `:param` (`first_path_param_index`): `/a/:b` → 1, none → Int.max.
    public static func firstParamIndex(_ path: String) -> Int {
        guard let colon = path.firstIndex(of: ":") else { return Int.max }
        return path[..<colon].filter { $0 == "/" }.count - 1
    }

    /// Endpoints with their concatenated sources, ordered as KG registers them: by the depth of
    /// the first path parameter, deepest (or none) first, ties in notebook order.
    public func endpoints(in cells: [String]) -> [(path: String, sources: [String: String])] {
        var order: [String] = []
        var table: [String: [String: String]] = [:]
        for cell in cells {
            guard let (verb, path) = endpoint(of: cell) else { continue }
            if table[path] == nil {
                order.append(path)
                table[path] = [:]
            }
            table[path]![verb, default: ""] += cell + "\n"
        }
        let sorted = order.enumerated().sorted { a, b in
            let (ia, ib) = (Self.firstParamIndex(a.element), Self.firstParamIndex(b.element))
            return ia != ib ? ia > ib : a.offset < b.offset
        }
        return sorted.map { ($0.element, table[$0.element]!) }
    }

    /// `ResponseInfo` sources by exact path, then verb (`endpoint_responses`).
    public func responses(in cells: [String]) -> [String: [String: String]] {
        var table: [String: [String: String]] = [:]
        for cell in cells {
            guard let (verb, path) = responseInfo(of: cell) else { continue }
            table[path, default: [:]][verb, default: ""] += cell + "\n"
        }
        return table
    }

    /// A per-endpoint timeout written in an endpoint cell as `{prefix} Timeout: <seconds>` (a
    /// Ganymede addition; the last such line of the concatenated source wins).
    public func timeout(in source: String) -> Duration? {
        var found: Duration?
        for line in source.split(whereSeparator: \.isNewline) {
            guard line.hasPrefix(commentPrefix) else { continue }
            var rest = Substring(line.dropFirst(commentPrefix.count)).drop { $0.isWhitespace }
            guard rest.hasPrefix("Timeout") else { continue }
            rest = rest.dropFirst("Timeout".count).drop { $0.isWhitespace || $0 == ":" }
            var number = rest.trimmingWhitespace()
            if number.hasSuffix("s") { number = String(number.dropLast()).trimmingWhitespace() }
            if let seconds = Double(number), seconds > 0, seconds.isFinite {
                found = .milliseconds(Int64(seconds * 1000))
            }
        }
        return found
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        let chars = Array(String(self))
        guard let first = chars.firstIndex(where: { !$0.isWhitespace }),
              let last = chars.lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(chars[first...last])
    }
}
