import Foundation

/// An endpoint path with `:name` parameters (`request_utils.parameterize_path`): each `:name`
/// becomes `(?P<name>[^/]+)` and tornado matches the whole path. A parameter runs to the end of
/// its segment; the text before it in the segment must match literally.
public struct PathPattern: Sendable {
    enum Segment: Sendable {
        case literal(String)
        /// `prefix` then a non-empty value captured as `name`.
        case parameter(prefix: String, name: String)
    }

    public let path: String
    let segments: [Segment]

    public init(_ path: String) throws(NotebookError) {
        self.path = path
        var segments: [Segment] = []
        for raw in path.split(separator: "/", omittingEmptySubsequences: false).dropFirst() {
            if let colon = raw.firstIndex(of: ":") {
                let name = String(raw[raw.index(after: colon)...])
                guard !name.isEmpty, !name.contains(":") else {
                    throw NotebookError("has an endpoint path with an unusable parameter: \(path)")
                }
                segments.append(.parameter(prefix: String(raw[..<colon]), name: name))
            } else {
                segments.append(.literal(String(raw)))
            }
        }
        self.segments = segments
    }

    /// The parameter names in path order.
    public var parameterNames: [String] {
        var names: [String] = []
        for case .parameter(_, let name) in segments { names.append(name) }
        return names
    }

    /// Matches percent-decoded request segments (the path after the mount prefix, split on
    /// `/`, without the leading empty one); returns the parameters in path order.
    public func match(_ request: [String]) -> [(name: String, value: String)]? {
        guard request.count == segments.count else { return nil }
        var params: [(name: String, value: String)] = []
        for (segment, value) in zip(segments, request) {
            switch segment {
            case .literal(let literal):
                guard literal == value else { return nil }
            case .parameter(let prefix, let name):
                guard value.hasPrefix(prefix), value.count > prefix.count else { return nil }
                params.append((name, String(value.dropFirst(prefix.count))))
            }
        }
        return params
    }
}
