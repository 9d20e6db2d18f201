import ArgumentParser
import Foundation
import Yams

/// Environment variables and config-file values, looked up in precedence order
/// (`GANYMEDE_<KEY>`, then the EG/KG names, then the file).
struct Settings {
    let env: [String: String]
    let file: [String: Any]

    static let helpText = """
    Precedence: flags > environment > config file (--config or GANYMEDE_CONFIG, YAML).
    Every option also reads GANYMEDE_<OPTION> (e.g. GANYMEDE_PORT) before the EG_/KG_ names listed with it.
    Other environment honoured: EG_SENSITIVE_ENV_KEYS (comma list never passed to kernels),
    JUPYTER_PATH / JUPYTER_DATA_DIR (kernelspec discovery), KERNEL_LAUNCH_TIMEOUT and KERNEL_ID in a POST's env.
    Kernels get KERNEL_ID, KERNEL_USERNAME, KERNEL_LANGUAGE and KERNEL_GATEWAY=1; auth tokens never reach them.
    """

    static func loadFile(_ path: String?) throws -> [String: Any] {
        guard let path else { return [:] }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("cannot read config file \(path)")
        }
        guard let object = try Yams.load(yaml: text) else { return [:] }
        guard let dict = object as? [String: Any] else { throw ValidationError("config file \(path) must be a mapping") }
        return dict
    }

    func string(_ key: String, env names: [String]) -> String? {
        for name in ["GANYMEDE_" + key.uppercased()] + names {
            if let v = env[name], !v.isEmpty { return v }
        }
        if let v = file[key] {
            if let list = v as? [Any] { return list.map { "\($0)" }.joined(separator: ",") }
            return "\(v)"
        }
        return nil
    }

    /// Like `string`, but a variable set to the empty string counts as set: for lists where
    /// empty means "nobody" (EG_UNAUTHORIZED_USERS= clears the default `root`, as in EG).
    func stringAllowingEmpty(_ key: String, env names: [String]) -> String? {
        for name in ["GANYMEDE_" + key.uppercased()] + names {
            if let v = env[name] { return v }
        }
        return string(key, env: [])
    }

    func int(_ key: String, env names: [String]) throws -> Int? {
        guard let s = string(key, env: names) else { return nil }
        guard let v = Int(s) else { throw ValidationError("\(key) must be an integer, got '\(s)'") }
        return v
    }

    func double(_ key: String, env names: [String]) throws -> Double? {
        guard let s = string(key, env: names) else { return nil }
        guard let v = Double(s), v.isFinite else { throw ValidationError("\(key) must be a number, got '\(s)'") }
        return v
    }

    func bool(_ key: String, env names: [String]) throws -> Bool? {
        try string(key, env: names).map(Self.parseBool)
    }

    static func parseBool(_ s: String) throws -> Bool {
        switch s.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ValidationError("expected true or false, got '\(s)'")
        }
    }

    static func list(_ s: String?) -> [String] {
        (s ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}
