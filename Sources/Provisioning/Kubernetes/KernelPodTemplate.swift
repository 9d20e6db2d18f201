import Foundation
import JupyterProtocol
import Yams

/// The kernel pod's manifest: the kernelspec's template (or a built-in one) rendered with the
/// kernel's values, then the fields the gateway owns set over it.
///
/// EG renders `kernel-pod.yaml.j2` with Jinja as text and parses the result, so a value such as
/// `KERNEL_USERNAME="x\n  hostNetwork: true"` becomes YAML structure (template injection).
/// Here the template is parsed first, with every `{{ name }}` turned into an opaque token, and
/// the values are then put into the parsed strings: a value is only ever a string's content.
/// Jinja control blocks (`{% ... %}`) are not supported and are refused with a clear error.
public enum KernelPodTemplate {
    /// Labels every kernel pod carries (EG's `kernel_id` and `component: kernel`).
    public static func labels(kernelID: String) -> [String: String] {
        ["kernel_id": kernelID, "component": "kernel", "app": "ganymede"]
    }

    /// Fields whose rendered values must be integers in the Pod schema.
    static let integerKeys: Set<String> = ["runAsUser", "runAsGroup", "fsGroup", "containerPort", "terminationGracePeriodSeconds",
                                            "activeDeadlineSeconds"]

    /// Parses `text` with `{{ name }}` placeholders and fills them from `values`; unknown names
    /// are an error naming them.
    public static func render(_ text: String, values: [String: String]) throws(ProvisionerError) -> JSONValue {
        if text.contains("{%") {
            throw ProvisionerError("the kernel pod template uses Jinja control blocks ({% ... %}), which Ganymede does not render; "
                                   + "use plain YAML with {{ name }} placeholders")
        }
        var tokens: [String: String] = [:]
        var prepared = ""
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw ProvisionerError("the kernel pod template has an unclosed {{")
            }
            prepared += rest[..<open.lowerBound]
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw ProvisionerError("the kernel pod template has an unsupported expression {{\(name)}} (only {{ name }})")
            }
            guard values[name] != nil else { throw ProvisionerError("the kernel pod template uses {{ \(name) }}, which has no value") }
            let token = "GANYMEDEVAR\(tokens.count)X"
            tokens[token] = name
            prepared += token
            rest = rest[close.upperBound...]
        }
        prepared += rest
        let parsed: Any?
        do {
            parsed = try Yams.load(yaml: prepared)
        } catch {
            throw ProvisionerError("the kernel pod template is not valid YAML: \(error)")
        }
        guard let object = parsed as? [String: Any] else { throw ProvisionerError("the kernel pod template is not a YAML mapping") }
        return substitute(json(object), key: nil, tokens: tokens, values: values)
    }

    private static func json(_ any: Any) -> JSONValue {
        switch any {
        case let b as Bool: .bool(b)
        case let i as Int: .int(i)
        case let d as Double: .double(d)
        case let s as String: .string(s)
        case let a as [Any]: .array(a.map(json))
        case let o as [String: Any]: .object(o.mapValues(json))
        default: .null
        }
    }

    private static func substitute(_ value: JSONValue, key: String?, tokens: [String: String], values: [String: String]) -> JSONValue {
        switch value {
        case .string(var s):
            guard s.contains("GANYMEDEVAR") else { return value }
            for (token, name) in tokens where s.contains(token) {
                s = s.replacingOccurrences(of: token, with: values[name] ?? "")
            }
            if let key, integerKeys.contains(key), let i = Int(s) { return .int(i) }
            return .string(s)
        case .array(let items): return .array(items.map { substitute($0, key: key, tokens: tokens, values: values) })
        case .object(let o):
            var out: [String: JSONValue] = [:]
            for (k, v) in o {
                let newKey = tokens.keys.contains(where: { k.contains($0) })
                    ? tokens.reduce(k) { $0.replacingOccurrences(of: $1.key, with: values[$1.value] ?? "") } : k
                out[newKey] = substitute(v, key: k, tokens: tokens, values: values)
            }
            return .object(out)
        default: return value
        }
    }

    /// What the gateway owns, set over the rendered template: name, namespace, labels, the first
    /// container's image (unless the template names one), its environment (launcher protocol
    /// values win), resources (the profile's grant as requests and limits), restart policy.
    public static func finish(_ template: JSONValue?, podName: String, namespace: String, kernelID: String, image: String,
                              environment: [(String, String)], resources: ResourceRequest?, serviceAccount: String,
                              uid: Int?, gid: Int?, volumes: JSONValue?, volumeMounts: JSONValue?) -> JSONValue {
        var pod = template?.objectValue ?? [:]
        pod["apiVersion"] = .string("v1")
        pod["kind"] = .string("Pod")
        var metadata = pod["metadata"]?.objectValue ?? [:]
        metadata["name"] = .string(podName)
        metadata["namespace"] = .string(namespace)
        metadata.removeValue(forKey: "generateName")
        var labels = metadata["labels"]?.objectValue ?? [:]
        for (k, v) in Self.labels(kernelID: kernelID) { labels[k] = .string(v) }
        metadata["labels"] = .object(labels)
        pod["metadata"] = .object(metadata)

        var spec = pod["spec"]?.objectValue ?? [:]
        if spec["restartPolicy"] == nil { spec["restartPolicy"] = .string("Never") }
        if spec["serviceAccountName"] == nil { spec["serviceAccountName"] = .string(serviceAccount) }
        if uid != nil || gid != nil {
            var security = spec["securityContext"]?.objectValue ?? [:]
            if let uid, security["runAsUser"] == nil { security["runAsUser"] = .int(uid) }
            if let gid, security["runAsGroup"] == nil { security["runAsGroup"] = .int(gid) }
            if let gid, security["fsGroup"] == nil { security["fsGroup"] = .int(gid) }
            spec["securityContext"] = .object(security)
        }
        if case .array(let extra)? = volumes {
            spec["volumes"] = .array((spec["volumes"]?.arrayValue ?? []) + extra)
        }
        var containers = spec["containers"]?.arrayValue ?? []
        if containers.isEmpty { containers = [.object(["name": .string("kernel")])] }
        var first = containers[0].objectValue ?? [:]
        if first["name"]?.stringValue?.isEmpty ?? true { first["name"] = .string("kernel") }
        if first["image"]?.stringValue?.isEmpty ?? true { first["image"] = .string(image) }
        let ours = Set(environment.map(\.0))
        let kept = (first["env"]?.arrayValue ?? []).filter { !ours.contains($0["name"]?.stringValue ?? "") }
        first["env"] = .array(kept + environment.map { .object(["name": .string($0.0), "value": .string($0.1)]) })
        if case .array(let mounts)? = volumeMounts {
            first["volumeMounts"] = .array((first["volumeMounts"]?.arrayValue ?? []) + mounts)
        }
        if let resources, !resources.isEmpty {
            var amounts: [String: JSONValue] = [:]
            if let cpus = resources.cpus { amounts["cpu"] = .string(cpuQuantity(cpus)) }
            if let memory = resources.memoryBytes { amounts["memory"] = .string(String(memory)) }
            if let gpus = resources.gpus, gpus > 0 { amounts["nvidia.com/gpu"] = .string(String(gpus)) }
            // Requests equal limits (Guaranteed QoS for CPU and memory); GPUs may only be limits
            // or equal to them, so they are both too.
            first["resources"] = .object(["requests": .object(amounts), "limits": .object(amounts)])
        }
        containers[0] = .object(first)
        spec["containers"] = .array(containers)
        pod["spec"] = .object(spec)
        return .object(pod)
    }

    /// CPUs as a Kubernetes quantity: whole numbers as such, else millicores.
    static func cpuQuantity(_ cpus: Double) -> String {
        cpus == cpus.rounded() ? String(Int(cpus)) : "\(Int((cpus * 1000).rounded()))m"
    }

    /// A DNS-1123 label from `text` (pod and namespace names): lowercase alphanumerics and '-',
    /// at most 63 characters, starting and ending alphanumeric.
    public static func dnsLabel(_ text: String) -> String {
        var out = String(text.lowercased().map { ($0.isASCII && ($0.isLetter || $0.isNumber)) ? $0 : "-" })
        while out.contains("--") { out = out.replacingOccurrences(of: "--", with: "-") }
        out = String(out.prefix(63))
        out = out.trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return out.isEmpty ? "kernel" : out
    }
}
