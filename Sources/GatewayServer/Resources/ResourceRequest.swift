import Foundation
import JupyterProtocol
import Provisioning

extension ResourceRequest {
    /// "1.5 CPUs, 2 GiB, 1 GPU".
    public var summary: String {
        var parts: [String] = []
        if let cpus { parts.append("\(Quantity.format(cpus)) CPU\(cpus == 1 ? "" : "s")") }
        if let memoryBytes { parts.append(Quantity.formatBytes(memoryBytes)) }
        if let gpus, gpus > 0 { parts.append("\(gpus) GPU\(gpus == 1 ? "" : "s")") }
        return parts.isEmpty ? "no limits" : parts.joined(separator: ", ")
    }
}

/// Kubernetes quantity syntax (`resource.Quantity`): `500m`, `2`, `1.5` for CPUs; `2Gi`, `512Mi`,
/// `1G`, `1000000` for bytes, as EG's KERNEL_CPUS / KERNEL_MEMORY carry them into pod templates.
public enum Quantity {
    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    static let binary: [(String, Double)] = [("Ki", 1024), ("Mi", 1_048_576), ("Gi", 1_073_741_824), ("Ti", 1_099_511_627_776), ("Pi", 1_125_899_906_842_624)]
    static let decimal: [(String, Double)] = [("k", 1e3), ("K", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("P", 1e15), ("m", 1e-3)]

    /// The plain number a quantity denotes.
    public static func parse(_ raw: String) throws(Invalid) -> Double {
        let s = raw.trimmingCharacters(in: .whitespaces)
        var number = Substring(s)
        var factor = 1.0
        for (suffix, f) in binary + decimal where s.hasSuffix(suffix) {
            number = s.dropLast(suffix.count)
            factor = f
            break
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }), let value = Double(number),
              value.isFinite, value >= 0 else {
            throw Invalid(description: "'\(raw.prefix(40))' is not a quantity (examples: 500m, 2, 512Mi, 2Gi)")
        }
        return value * factor
    }

    public static func cpus(_ raw: String) throws(Invalid) -> Double {
        let v = try parse(raw)
        guard v > 0 else { throw Invalid(description: "CPUs must be more than 0, got '\(raw)'") }
        return v
    }

    public static func bytes(_ raw: String) throws(Invalid) -> Int64 {
        let v = try parse(raw)
        guard v >= 1_048_576, v < 1e18 else { throw Invalid(description: "memory must be at least 1Mi, got '\(raw)'") }
        return Int64(v)
    }

    public static func count(_ raw: String) throws(Invalid) -> Int {
        let v = try parse(raw)
        guard v == v.rounded(), v < 1e6 else { throw Invalid(description: "a GPU count must be a whole number, got '\(raw)'") }
        return Int(v)
    }

    /// At most two decimals, without trailing zeros: 2, 0.5, 1.25.
    static func format(_ v: Double) -> String {
        guard v != v.rounded() else { return String(Int(v)) }
        var s = String(format: "%.2f", v)
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }

    public static func formatBytes(_ b: Int64) -> String {
        let gib = Double(b) / Double(1 << 30)
        if gib >= 1 { return "\(format(gib)) GiB" }
        return "\(format(Double(b) / Double(1 << 20))) MiB"
    }
}

/// Named resource profiles and the rules that turn a start request into a `ResourceRequest`.
///
/// A client names a profile (`KERNEL_RESOURCE_PROFILE`) or asks directly with EG's
/// `KERNEL_CPUS`, `KERNEL_MEMORY`, `KERNEL_GPUS`; the `_LIMIT` forms win for enforcement,
/// as they are the pod limits in EG's templates. A kernelspec may set
/// `metadata.resources: {"default_profile": "small", "allowed_profiles": ["small", "gpu"]}`.
public struct ResourcePolicy: Sendable {
    public var profiles: [String: ResourceRequest]
    /// Whether a client may ask for resources outside any profile.
    public var allowCustom: Bool

    public init(profiles: [String: ResourceRequest] = [:], allowCustom: Bool = true) {
        self.profiles = profiles
        self.allowCustom = allowCustom
    }

    /// Profiles from the config file's `resource_profiles` mapping.
    public static func parseProfiles(_ object: Any?) throws(Quantity.Invalid) -> [String: ResourceRequest] {
        guard let object else { return [:] }
        guard let dict = object as? [String: Any] else {
            throw Quantity.Invalid(description: "resource_profiles must map names to {cpus, memory, gpus}")
        }
        var out: [String: ResourceRequest] = [:]
        for (name, value) in dict {
            guard let fields = value as? [String: Any] else {
                throw Quantity.Invalid(description: "resource profile '\(name)' must be a mapping")
            }
            var r = ResourceRequest()
            if let v = fields["cpus"] { r.cpus = try Quantity.cpus("\(v)") }
            if let v = fields["memory"] { r.memoryBytes = try Quantity.bytes("\(v)") }
            if let v = fields["gpus"] { r.gpus = try Quantity.count("\(v)") }
            if let v = fields["slurm_partition"] {
                let partition = "\(v)"
                guard !partition.isEmpty, partition.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }) else {
                    throw Quantity.Invalid(description: "resource profile '\(name)': slurm_partition '\(partition.prefix(64))' is not a partition name")
                }
                r.partition = partition
            }
            let unknown = Set(fields.keys).subtracting(["cpus", "memory", "gpus", "slurm_partition"])
            guard unknown.isEmpty else {
                throw Quantity.Invalid(description: "resource profile '\(name)' has unknown field(s) \(unknown.sorted().joined(separator: ", ")) (known: cpus, memory, gpus, slurm_partition)")
            }
            out[name] = r
        }
        return out
    }

    /// What a start asks for, or a 400/403 naming the problem.
    public func request(env: [String: String]?, spec: KernelSpec) throws(GatewayError) -> ResourceRequest {
        let env = env ?? [:]
        let meta = spec.file.metadata?["resources"]
        let allowed: Set<String>? = {
            guard case .array(let items)? = meta?["allowed_profiles"] else { return nil }
            return Set(items.compactMap(\.stringValue))
        }()
        let direct = ["KERNEL_CPUS", "KERNEL_MEMORY", "KERNEL_GPUS", "KERNEL_CPUS_LIMIT", "KERNEL_MEMORY_LIMIT", "KERNEL_GPUS_LIMIT"]
        let asksDirectly = direct.contains { env[$0] != nil }
        let profileName = env["KERNEL_RESOURCE_PROFILE"] ?? (asksDirectly ? nil : meta?["default_profile"]?.stringValue)
        var request = ResourceRequest()
        if let profileName {
            guard let profile = profiles[profileName] else {
                let known = profiles.keys.sorted().joined(separator: ", ")
                throw GatewayError.badRequest("Unknown resource profile '\(profileName.prefix(64))'; known: \(known.isEmpty ? "none" : known)")
            }
            if let allowed, !allowed.contains(profileName) {
                throw GatewayError.forbidden("Kernelspec '\(spec.name)' does not allow resource profile '\(profileName)'; allowed: \(allowed.sorted().joined(separator: ", "))")
            }
            request = profile
        }
        if asksDirectly {
            guard allowCustom || profileName != nil else {
                throw GatewayError.forbidden("Custom resource requests are not allowed here; pick one of the profiles with KERNEL_RESOURCE_PROFILE")
            }
            do {
                if let v = env["KERNEL_CPUS_LIMIT"] ?? env["KERNEL_CPUS"] { request.cpus = try Quantity.cpus(v) }
                if let v = env["KERNEL_MEMORY_LIMIT"] ?? env["KERNEL_MEMORY"] { request.memoryBytes = try Quantity.bytes(v) }
                if let v = env["KERNEL_GPUS_LIMIT"] ?? env["KERNEL_GPUS"] { request.gpus = try Quantity.count(v) }
            } catch {
                throw GatewayError.badRequest("Invalid resource request: \(error.description)")
            }
            if let profileName, let profile = profiles[profileName], !allowCustom {
                if let c = request.cpus, let max = profile.cpus, c > max { throw Self.over("CPUs", request.summary, profileName) }
                if let m = request.memoryBytes, let max = profile.memoryBytes, m > max { throw Self.over("memory", request.summary, profileName) }
                if let g = request.gpus, g > profile.gpus ?? 0 { throw Self.over("GPUs", request.summary, profileName) }
            }
        }
        return request
    }

    static func over(_ what: String, _ asked: String, _ profile: String) -> GatewayError {
        GatewayError.forbidden("Requested \(asked) is over the \(what) of profile '\(profile)'")
    }
}
