import Foundation
import JupyterProtocol

/// Builds a kernel's environment from the request, the gateway's environment and the
/// kernelspec, following EG's `MainKernelHandler._build_kernel_env` and
/// `RemoteKernelManager._launch_kernel`, with KG's rule that PATH is always kept.
///
/// - Request without `env`: the gateway's environment, minus secrets.
/// - Request with `env`: PATH, EG_INHERITED_ENVS from the gateway, client `KERNEL_*` names,
///   and client names in EG_CLIENT_ENVS (`*` = all).
/// - Then KERNEL_ID, KERNEL_USERNAME, KERNEL_LANGUAGE, KERNEL_GATEWAY=1; then the kernelspec
///   `env` with `${VAR}` substitution; client values win over the kernelspec's.
/// - Auth tokens and EG_SENSITIVE_ENV_KEYS never reach a kernel.
struct KernelEnvironment {
    static let maxValueLength = 4096
    static let secretNames: Set<String> = ["EG_AUTH_TOKEN", "KG_AUTH_TOKEN", "GANYMEDE_AUTH_TOKEN", "EG_REMOTE_PWD", "JUPYTER_TOKEN"]

    /// Checks a request's env object: names are identifiers, values strings of bounded length
    /// without characters a shell or a launcher could misread (EG HEAD's validation).
    static func validate(_ raw: Any?) throws(GatewayError) -> [String: String]? {
        guard let raw, !(raw is NSNull) else { return nil }
        guard let dict = raw as? [String: Any] else {
            throw .badRequest("'env' must be an object of string values")
        }
        var out: [String: String] = [:]
        for (key, value) in dict {
            guard let s = value as? String else {
                throw .badRequest("env value of '\(key)' must be a string")
            }
            guard isValidName(key) else {
                throw .badRequest("env name '\(key.prefix(64))' is not a valid variable name")
            }
            guard s.utf8.count <= maxValueLength else {
                throw .badRequest("env value of '\(key)' is longer than \(maxValueLength) characters")
            }
            if let bad = s.unicodeScalars.first(where: { forbidden[$0] != nil }) {
                let shown: String = forbidden[bad] ?? "?"
                throw .badRequest("env value of '\(key)' contains a forbidden character (\(shown))")
            }
            out[key] = s
        }
        return out
    }

    /// Characters EG (HEAD) refuses in env values, with how to name them in the error.
    static let forbidden: [Unicode.Scalar: String] = ["\0": "NUL", "\n": "newline", "\r": "carriage return", "`": "'`'", "$": "'$'"]

    static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= 256 else { return false }
        func isLetter(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F }
        func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
        guard isLetter(first) else { return false }
        return bytes.allSatisfy { isLetter($0) || isDigit($0) }
    }

    static func build(
        clientEnv: [String: String]?, gatewayEnv: [String: String], configuration c: GatewayConfiguration,
        spec: KernelSpec, kernelID: String, username: String
    ) -> [String: String] {
        let secrets = secretNames.union(c.sensitiveEnvKeys)
        var env: [String: String] = [:]
        var overrides: [String: String] = [:]
        if let clientEnv {
            if let path = gatewayEnv["PATH"] { env["PATH"] = path }
            for name in c.inheritedEnvs { if let v = gatewayEnv[name] { env[name] = v } }
            let all = c.clientEnvs.contains("*")
            for (k, v) in clientEnv where k.hasPrefix("KERNEL_") || all || c.clientEnvs.contains(k) {
                overrides[k] = v
            }
        } else {
            env = gatewayEnv
        }
        for (k, v) in overrides { env[k] = v }
        env["KERNEL_ID"] = kernelID
        env["KERNEL_USERNAME"] = username
        env["KERNEL_LANGUAGE"] = spec.file.language
        env["KERNEL_GATEWAY"] = "1"
        // ipykernel exits when this process goes away (ParentPollerUnix), as with jupyter_client:
        // kernels never outlive the gateway, even when it is killed with SIGKILL.
        // With session persistence the kernel must outlive a gateway restart to be re-attached.
        if !c.sessionPersistence { env["JPY_PARENT_PID"] = String(getpid()) }
        for (k, v) in spec.file.env ?? [:] where overrides[k] == nil {
            env[k] = KernelSpecTemplate.substituteEnvironment(v, environment: env)
        }
        for name in secrets { env.removeValue(forKey: name) }
        return env
    }
}
