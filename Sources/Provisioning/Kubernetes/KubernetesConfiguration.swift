import Foundation
import Yams

/// How the gateway reaches the Kubernetes API and where kernel pods go, by EG's names where EG
/// has them (`k8s.py`, `container.py`): `EG_NAMESPACE`, `EG_SHARED_NAMESPACE`,
/// `EG_DEFAULT_KERNEL_SERVICE_ACCOUNT_NAME`, `EG_PROHIBITED_UIDS`, `EG_PROHIBITED_GIDS`, `EG_KERNEL_IMAGE`...
public struct KubernetesConfiguration: Sendable {
    /// The API server, e.g. `https://10.0.0.1:443` (in cluster) or a kubeconfig's `server`.
    public var server: URL
    /// Bearer token (the service account's, or the kubeconfig user's `token`/`tokenFile`).
    public var token: String?
    /// PEM of the CA that signed the API server's certificate; nil: the system's trust store.
    public var caCertificatePEM: String?
    public var insecureSkipTLSVerify = false
    /// Where kernels go when they share one namespace (EG_NAMESPACE; the gateway's own in cluster).
    public var namespace = "default"
    /// EG_SHARED_NAMESPACE. Ganymede defaults to true (EG: false): a namespace-scoped Role then
    /// suffices. False creates `<user>-<kernel id>` per kernel and deletes it with the kernel.
    public var sharedNamespace = true
    /// EG_DEFAULT_KERNEL_SERVICE_ACCOUNT_NAME.
    public var serviceAccountName = "default"
    /// EG_PROHIBITED_UIDS / EG_PROHIBITED_GIDS: KERNEL_UID / KERNEL_GID values refused with 403.
    public var prohibitedUIDs: Set<Int> = [0]
    public var prohibitedGIDs: Set<Int> = [0]
    /// The kernel image when neither the request (KERNEL_IMAGE) nor the kernelspec (`image_name`) names one.
    public var defaultImage = "elyra/kernel-py:3.3.0"
    /// Seconds a deleted kernel pod gets to stop (EG_KERNEL_POD_GRACE_PERIOD... EG uses the API default).
    public var deleteGracePeriod = 5

    public init(server: URL) { self.server = server }

    /// In-cluster configuration (the pod's service account), as client-go's `InClusterConfig`:
    /// `KUBERNETES_SERVICE_HOST`/`_PORT`, the token, CA and namespace files.
    public static func inCluster(environment: [String: String],
                                 secrets: String = "/var/run/secrets/kubernetes.io/serviceaccount") -> KubernetesConfiguration? {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
              let token = try? String(contentsOfFile: "\(secrets)/token", encoding: .utf8) else { return nil }
        let port = environment["KUBERNETES_SERVICE_PORT"] ?? "443"
        let hostPart = host.contains(":") ? "[\(host)]" : host
        guard let url = URL(string: "https://\(hostPart):\(port)") else { return nil }
        var c = KubernetesConfiguration(server: url)
        c.token = token.trimmingCharacters(in: .whitespacesAndNewlines)
        c.caCertificatePEM = try? String(contentsOfFile: "\(secrets)/ca.crt", encoding: .utf8)
        if let ns = try? String(contentsOfFile: "\(secrets)/namespace", encoding: .utf8) {
            c.namespace = ns.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return c
    }

    /// A kubeconfig's current context: `server`, `certificate-authority(-data)`,
    /// `insecure-skip-tls-verify`, the user's `token` or `tokenFile`, the context's `namespace`.
    /// Client certificates and exec/auth-provider plugins are not supported (a clear error).
    public static func kubeconfig(at path: String) throws(ProvisionerError) -> KubernetesConfiguration {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ProvisionerError("cannot read kubeconfig \(path)")
        }
        guard let root = (try? Yams.load(yaml: text)) as? [String: Any] else {
            throw ProvisionerError("kubeconfig \(path) is not a YAML mapping")
        }
        func named(_ list: String, _ name: String?, _ field: String) -> [String: Any]? {
            guard let items = root[list] as? [[String: Any]] else { return nil }
            let item: [String: Any]? = if let name { items.first { $0["name"] as? String == name } } else { items.first }
            return item?[field] as? [String: Any]
        }
        let contextName = root["current-context"] as? String
        guard let context = named("contexts", contextName, "context") else {
            throw ProvisionerError("kubeconfig \(path) has no context \(contextName.map { "'\($0)'" } ?? "")")
        }
        guard let cluster = named("clusters", context["cluster"] as? String, "cluster"),
              let server = (cluster["server"] as? String).flatMap(URL.init(string:)) else {
            throw ProvisionerError("kubeconfig \(path): the current context's cluster has no server")
        }
        var c = KubernetesConfiguration(server: server)
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        func file(_ p: String) -> String? {
            let url = p.hasPrefix("/") ? URL(fileURLWithPath: p) : base.appendingPathComponent(p)
            return try? String(contentsOf: url, encoding: .utf8)
        }
        if let data = cluster["certificate-authority-data"] as? String, let pem = Data(base64Encoded: data) {
            c.caCertificatePEM = String(decoding: pem, as: UTF8.self)
        } else if let ca = cluster["certificate-authority"] as? String {
            guard let pem = file(ca) else { throw ProvisionerError("kubeconfig \(path): cannot read certificate-authority \(ca)") }
            c.caCertificatePEM = pem
        }
        c.insecureSkipTLSVerify = cluster["insecure-skip-tls-verify"] as? Bool ?? false
        if let user = named("users", context["user"] as? String, "user") {
            if let token = user["token"] as? String {
                c.token = token
            } else if let tokenFile = user["tokenFile"] as? String {
                c.token = file(tokenFile)?.trimmingCharacters(in: .whitespacesAndNewlines)
            } else if user["client-certificate"] != nil || user["client-certificate-data"] != nil || user["exec"] != nil
                        || user["auth-provider"] != nil {
                throw ProvisionerError("kubeconfig \(path): only token users are supported (client certificates and exec/auth-provider plugins are not)")
            }
        }
        if let ns = context["namespace"] as? String, !ns.isEmpty { c.namespace = ns }
        return c
    }
}
