import Foundation
import JupyterProtocol

/// Who may start which kernel, by `KERNEL_USERNAME`, exactly as Enterprise Gateway decides it.
///
/// Two places in EG, with slightly different rules, both mirrored:
/// - starting a kernel (`BaseProcessProxyABC._enforce_authorization`, processproxy.py): the
///   kernelspec's `process_proxy.config.unauthorized_users` is **unioned** with the global
///   `unauthorized_users` (EG_UNAUTHORIZED_USERS, default `root`), and its `authorized_users`
///   **replaces** the global `authorized_users` (EG_AUTHORIZED_USERS, empty = everyone);
/// - filtering kernelspecs with `?user=` (`apply_user_filter`, services/kernelspecs/handlers.py):
///   the same lists, except that a kernelspec without its own `authorized_users` falls back to
///   the global one. (EG tests `user in "bob,alice"` on the raw comma string there, a substring
///   match; we split on commas, which is what the lists mean.)
///
/// Matching is case-sensitive, as in EG.
enum KernelAuthorization {
    /// The 403 EG raises through `log_and_raise`, whose text lands in `reason` with an empty
    /// `message` (jupyter_server's gateway client shows both).
    static func checkStart(user: String, spec: KernelSpec, configuration: GatewayConfiguration) throws(GatewayError) {
        let config = spec.processProxy?["config"]
        let unauthorized = configuration.unauthorizedUsers.union(users(config?["unauthorized_users"]))
        if unauthorized.contains(user) {
            throw refusal(user: user, spec: spec, clause: "not authorized")
        }
        let own = users(config?["authorized_users"])
        let authorized = own.isEmpty ? configuration.authorizedUsers : own
        if !authorized.isEmpty && !authorized.contains(user) {
            throw refusal(user: user, spec: spec, clause: "not in the set of users authorized")
        }
    }

    /// Whether `GET /api/kernelspecs?user=` lists the spec for this user.
    static func isVisible(_ spec: KernelSpec, to user: String, configuration: GatewayConfiguration) -> Bool {
        let config = spec.processProxy?["config"]
        if users(config?["unauthorized_users"]).contains(user) || configuration.unauthorizedUsers.contains(user) {
            return false
        }
        if let own = config?["authorized_users"] {
            let list = users(own)
            return list.isEmpty || list.contains(user)
        }
        return configuration.authorizedUsers.isEmpty || configuration.authorizedUsers.contains(user)
    }

    /// A comma-separated string (EG's form) or a JSON array of names.
    static func users(_ value: JSONValue?) -> Set<String> {
        switch value {
        case .string(let s):
            return parseList(s)
        case .array(let items):
            return Set(items.compactMap(\.stringValue).filter { !$0.isEmpty })
        default:
            return []
        }
    }

    /// EG splits on "," without trimming; we trim blanks around names, since a name with a
    /// leading space can never match a real user.
    static func parseList(_ raw: String) -> Set<String> {
        Set(raw.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
    }

    private static func refusal(user: String, spec: KernelSpec, clause: String) -> GatewayError {
        let text = "User '\(user)' is \(clause) to start kernel '\(spec.file.displayName)'. "
            + "Ensure KERNEL_USERNAME is set to an appropriate value and retry the request."
        return GatewayError(.forbidden, reason: text, "")
    }
}
