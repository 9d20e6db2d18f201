import AsyncHTTPClient
import Foundation

/// The parts of an nbformat 4 notebook that notebook-http and seeding use: cells in order
/// (`source` joined when stored as a list of lines), the kernelspec name and the language.
public struct NotebookDocument: Sendable {
    public struct Cell: Sendable {
        public var type: String
        public var source: String
    }

    public var cells: [Cell]
    /// `metadata.kernelspec.name`.
    public var kernelName: String?
    /// `metadata.language_info.name` (KG picks the comment prefix and REQUEST syntax from it).
    public var language: String?
    /// The file as read, served by `/_api/source`.
    public var bytes: [UInt8]

    public var codeCells: [String] { cells.filter { $0.type == "code" }.map(\.source) }

    /// Parses notebook JSON; the error says what is wrong, for the startup or reload log.
    public static func parse(_ bytes: [UInt8]) throws(NotebookError) -> NotebookDocument {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes))
        } catch {
            throw NotebookError("is not valid JSON")
        }
        guard let root = object as? [String: Any] else { throw NotebookError("is not a JSON object") }
        guard let major = root["nbformat"] as? Int, major == 4 else {
            throw NotebookError("is not an nbformat 4 notebook (nbformat: \(root["nbformat"] ?? "missing"))")
        }
        guard let rawCells = root["cells"] as? [Any] else { throw NotebookError("has no 'cells' list") }
        var cells: [Cell] = []
        for (index, raw) in rawCells.enumerated() {
            guard let cell = raw as? [String: Any], let type = cell["cell_type"] as? String else {
                throw NotebookError("cell \(index) has no cell_type")
            }
            let source: String
            switch cell["source"] {
            case let s as String: source = s
            case let lines as [Any]:
                guard let strings = lines as? [String] else { throw NotebookError("cell \(index) has a non-string source line") }
                source = strings.joined()
            case nil: source = ""
            default: throw NotebookError("cell \(index) has a source that is neither a string nor a list of strings")
            }
            cells.append(Cell(type: type, source: source))
        }
        let metadata = root["metadata"] as? [String: Any]
        let kernelName = (metadata?["kernelspec"] as? [String: Any])?["name"] as? String
        let language = (metadata?["language_info"] as? [String: Any])?["name"] as? String
        return NotebookDocument(cells: cells, kernelName: kernelName, language: language, bytes: bytes)
    }

    /// Reads and parses a local notebook (`file://` URIs and plain paths, as KG's `_load_notebook`).
    public static func load(path: String) throws(NotebookError) -> NotebookDocument {
        let local = Self.localPath(path)
        guard let data = FileManager.default.contents(atPath: local) else {
            throw NotebookError("cannot be read", path: local)
        }
        do {
            return try parse(Array(data))
        } catch {
            throw NotebookError(error.message, path: local)
        }
    }

    /// Loads a notebook from a local path, a `file://` URI or an `http(s)://` URL (KG's
    /// `_load_notebook`, which uses `requests.get(uri, timeout=200)` and fails on an HTTP error).
    public static func load(uri: String) async throws(NotebookError) -> NotebookDocument {
        let lower = uri.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else { return try load(path: uri) }
        let body: [UInt8]
        do {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: uri), timeout: .seconds(200))
            guard response.status == .ok else {
                throw NotebookError("could not be downloaded: HTTP \(response.status.code)", path: uri)
            }
            body = Array(try await response.body.collect(upTo: maxDownload).readableBytesView)
        } catch let error as NotebookError {
            throw error
        } catch {
            throw NotebookError("could not be downloaded: \(error)", path: uri)
        }
        do {
            return try parse(body)
        } catch {
            throw NotebookError(error.message, path: uri)
        }
    }

    /// Largest notebook accepted from a URL.
    static let maxDownload = 64 << 20

    static func localPath(_ uri: String) -> String {
        if uri.hasPrefix("file://") { return String(uri.dropFirst("file://".count)).removingPercentEncoding ?? uri }
        return uri
    }
}

/// A notebook that cannot be loaded or served; the message names the file and the problem.
public struct NotebookError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var path: String?

    public init(_ message: String, path: String? = nil) {
        self.message = message
        self.path = path
    }

    public var description: String { path.map { "Notebook \($0) \(message)" } ?? "Notebook \(message)" }
}
