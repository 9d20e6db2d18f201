import Foundation

/// A kernelspec: the parsed `kernel.json` plus where it was found.
///
/// Fields as jupyter_client's `KernelSpec` (`docs/kernels.rst`, "Kernel specs"); the REST
/// `spec` object is exactly these keys, like `KernelSpec.to_dict()`.
public struct KernelSpec: Sendable, Equatable {
    public struct File: Codable, Sendable, Equatable {
        public var argv: [String]
        public var displayName: String
        public var language: String
        public var interruptMode: String?
        public var env: [String: String]?
        public var metadata: [String: JSONValue]?
        public var kernelProtocolVersion: String?

        enum CodingKeys: String, CodingKey {
            case argv, displayName = "display_name", language, interruptMode = "interrupt_mode", env, metadata
            case kernelProtocolVersion = "kernel_protocol_version"
        }
    }

    public var name: String
    public var file: File
    /// The directory holding kernel.json and the logos.
    public var resourceDirectory: URL

    public init(name: String, file: File, resourceDirectory: URL) {
        self.name = name
        self.file = file
        self.resourceDirectory = resourceDirectory
    }

    public enum InterruptMode: String, Sendable { case signal, message }

    public var interruptMode: InterruptMode {
        InterruptMode(rawValue: (file.interruptMode ?? "signal").lowercased()) ?? .signal
    }

    /// `metadata.process_proxy` (EG), if any.
    public var processProxy: JSONValue? { file.metadata?["process_proxy"] }

    /// The file names exposed as `resources` (jupyter_server `kernelspec_model`): `kernel.js`,
    /// `kernel.css`, and every `logo-*` under its name without the extension.
    public func resources(baseURL: String) -> [String: String] {
        var out: [String: String] = [:]
        let files = (try? FileManager.default.contentsOfDirectory(atPath: resourceDirectory.path)) ?? []
        let prefix = baseURL.hasSuffix("/") ? baseURL : baseURL + "/"
        let encodedName = name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? name
        for f in files.sorted() {
            let url = "\(prefix)kernelspecs/\(encodedName)/\(f)"
            if f == "kernel.js" || f == "kernel.css" {
                out[f] = url
            } else if f.hasPrefix("logo-") {
                let stem = (f as NSString).deletingPathExtension
                out[stem] = url
            }
        }
        return out
    }

    /// Parses a kernel.json.
    public static func load(name: String, directory: URL) throws -> KernelSpec {
        let data = try Data(contentsOf: directory.appendingPathComponent("kernel.json"))
        let file = try JSONDecoder().decode(File.self, from: data)
        guard !file.argv.isEmpty else {
            throw KernelSpecError.invalid(name: name, reason: "argv is empty")
        }
        return KernelSpec(name: name, file: file, resourceDirectory: directory)
    }
}

public enum KernelSpecError: Error, Equatable, CustomStringConvertible {
    case invalid(name: String, reason: String)
    public var description: String {
        switch self {
        case .invalid(let name, let reason): "kernelspec \(name): \(reason)"
        }
    }
}

/// Finds kernelspecs the way jupyter_client's `KernelSpecManager` does: every
/// `<dir>/kernels/<name>/kernel.json` on the Jupyter data path, first hit wins, plus
/// directories given explicitly (which hold `<name>/kernel.json` directly, like the
/// repository's bundled `kernelspecs/`).
public struct KernelSpecDiscovery: Sendable {
    /// Directories that directly contain `<name>/kernel.json`, searched in order.
    public var kernelDirectories: [URL]

    public init(kernelDirectories: [URL]) {
        self.kernelDirectories = kernelDirectories
    }

    /// jupyter_core's `jupyter_path("kernels")`: JUPYTER_PATH entries, the user data dir,
    /// then the environment prefix and system dirs.
    public static func jupyterKernelDirectories(environment: [String: String]) -> [URL] {
        var dirs: [String] = []
        if let jp = environment["JUPYTER_PATH"], !jp.isEmpty {
            dirs += jp.split(separator: ":").map(String.init)
        }
        if let dataDir = environment["JUPYTER_DATA_DIR"], !dataDir.isEmpty {
            dirs.append(dataDir)
        } else if let home = environment["HOME"] {
            dirs.append(home + "/.local/share/jupyter")
        }
        if let venv = environment["VIRTUAL_ENV"] {
            dirs.append(venv + "/share/jupyter")
        }
        dirs += ["/usr/local/share/jupyter", "/usr/share/jupyter"]
        return dirs.map { URL(fileURLWithPath: $0).appendingPathComponent("kernels") }
    }

    /// All valid kernelspecs, keyed by lowercased name. Invalid ones are reported, not fatal.
    public func discover() -> (specs: [String: KernelSpec], problems: [String]) {
        var specs: [String: KernelSpec] = [:]
        var problems: [String] = []
        let fm = FileManager.default
        for dir in kernelDirectories {
            guard let entries = try? fm.contentsOfDirectory(atPath: dir.path) else { continue }
            for entry in entries.sorted() {
                let name = entry.lowercased()
                guard specs[name] == nil else { continue }
                let specDir = dir.appendingPathComponent(entry)
                guard fm.fileExists(atPath: specDir.appendingPathComponent("kernel.json").path) else { continue }
                do {
                    specs[name] = try KernelSpec.load(name: name, directory: specDir)
                } catch {
                    problems.append("\(specDir.path): \(error)")
                }
            }
        }
        return (specs, problems)
    }
}

/// Substitutions applied to a kernelspec before launch.
public enum KernelSpecTemplate {
    /// Replaces `{name}` placeholders in argv; unknown placeholders are left as they are
    /// (EG `RemoteKernelManager.format_kernel_cmd`).
    public static func formatArgv(_ argv: [String], values: [String: String]) -> [String] {
        argv.map { formatOne($0, values: values) }
    }

    /// One left-to-right pass, like Python's `str.format`-style `re.sub` in jupyter_client:
    /// text inserted for a placeholder is never scanned again.
    static func formatOne(_ arg: String, values: [String: String]) -> String {
        let chars = Array(arg.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < chars.count {
            if chars[i] == "{" {
                var j = i + 1
                while j < chars.count, isIdentifier(chars[j]) { j += 1 }
                if j < chars.count, chars[j] == "}", j > i + 1 {
                    let name = String(String.UnicodeScalarView(chars[(i + 1)..<j]))
                    if let value = values[name] {
                        out.append(contentsOf: value.unicodeScalars)
                        i = j + 1
                        continue
                    }
                }
            }
            out.append(chars[i])
            i += 1
        }
        return String(out)
    }

    /// ASCII letters and `_` start a placeholder or variable name; digits may follow.
    static func isIdentifierStart(_ c: Unicode.Scalar) -> Bool {
        c == "_" || ("a"..."z").contains(c) || ("A"..."Z").contains(c)
    }

    static func isIdentifier(_ c: Unicode.Scalar) -> Bool {
        isIdentifierStart(c) || ("0"..."9").contains(c)
    }

    /// Python `string.Template.safe_substitute`: `$VAR` and `${VAR}` from `environment`,
    /// `$$` for a dollar, unknown names left untouched (jupyter_client provisioner `pre_launch`).
    public static func substituteEnvironment(_ value: String, environment: [String: String]) -> String {
        let chars = Array(value.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < chars.count {
            let c = chars[i]
            guard c == "$", i + 1 < chars.count else {
                out.append(c)
                i += 1
                continue
            }
            let n = chars[i + 1]
            if n == "$" {
                out.append("$")
                i += 2
            } else if n == "{" {
                var j = i + 2
                while j < chars.count, isIdentifier(chars[j]) { j += 1 }
                if j < chars.count, chars[j] == "}", j > i + 2 {
                    let name = String(String.UnicodeScalarView(chars[(i + 2)..<j]))
                    if let v = environment[name] {
                        out.append(contentsOf: v.unicodeScalars)
                    } else {
                        out.append(contentsOf: chars[i...j])
                    }
                    i = j + 1
                } else {
                    out.append(c)
                    i += 1
                }
            } else if isIdentifierStart(n) {
                var j = i + 1
                while j < chars.count, isIdentifier(chars[j]) { j += 1 }
                let name = String(String.UnicodeScalarView(chars[(i + 1)..<j]))
                if let v = environment[name] {
                    out.append(contentsOf: v.unicodeScalars)
                } else {
                    out.append(contentsOf: chars[i..<j])
                }
                i = j
            } else {
                out.append(c)
                i += 1
            }
        }
        return String(out)
    }
}
