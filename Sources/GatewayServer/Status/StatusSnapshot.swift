import Foundation
import JupyterProtocol

/// An optional written as `null` rather than left out, so scripts reading `/status.json` see
/// every field.
@propertyWrapper
struct NullEncoded<Value: Encodable>: Encodable {
    var wrappedValue: Value?

    init(wrappedValue: Value?) {
        self.wrappedValue = wrappedValue
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        if let wrappedValue { try c.encode(wrappedValue) } else { try c.encodeNil() }
    }
}

/// What the status page shows, gathered once per request; `GET /status.json` serves it as is,
/// `GET /status` renders it as HTML.
struct StatusSnapshot: Encodable {
    struct Summary: Encodable {
        var gatewayVersion: String
        var generatedAt: String
        var uptimeSeconds: Int
        var sampleIntervalSeconds: Double
        /// What the history covers: its capacity times the interval (an hour by default).
        var historyWindowSeconds: Double
        var kernels: Int
        var busy: Int
        var idle: Int
        var other: Int
        var connections: Int
        var users: Int
        /// The latest sample's rate; null before the first sample.
        @NullEncoded var messagesPerSecond: Double?

        enum CodingKeys: String, CodingKey {
            case gatewayVersion = "gateway_version", generatedAt = "generated_at", uptimeSeconds = "uptime_seconds"
            case sampleIntervalSeconds = "sample_interval_seconds", historyWindowSeconds = "history_window_seconds", kernels, busy, idle, other, connections, users
            case messagesPerSecond = "messages_per_second"
        }
    }

    struct Kernel: Encodable {
        var id: String
        /// The kernelspec name (the REST model's `name`).
        var name: String
        var displayName: String
        var user: String
        var executionState: String
        var connections: Int
        var lastActivity: String
        var idleSeconds: Int
        /// The provisioner's type, as in the `ganymede_kernel_start_seconds{provisioner}` metric.
        var provisioner: String
        /// The machine the kernel runs on: this gateway's host for local kernels, the SSH host
        /// or Slurm node for remote ones.
        @NullEncoded var host: String?
        /// The provisioner's own description (local: the process id).
        var process: String
        /// The granted resource profile ("0.5 CPUs, 1 GiB, 1 GPU (GPU 0)"); null when the kernel
        /// asked for none.
        @NullEncoded var resources: String?
        /// Why a dead kernel died.
        @NullEncoded var reason: String?

        enum CodingKeys: String, CodingKey {
            case id, name, displayName = "display_name", user, executionState = "execution_state", connections
            case lastActivity = "last_activity", idleSeconds = "idle_seconds", provisioner, host, process, resources, reason
        }
    }

    struct Point: Encodable {
        var time: String
        var kernels: Int
        var busy: Int
        var idle: Int
        var other: Int
        var messagesPerSecond: Double

        enum CodingKeys: String, CodingKey {
            case time, kernels, busy, idle, other, messagesPerSecond = "messages_per_second"
        }
    }

    var summary: Summary
    var kernels: [Kernel]
    var history: [Point]
    /// The samples behind `history`, for the charts.
    var samples: [StatusSample]
    var now: Date

    enum CodingKeys: String, CodingKey { case summary = "gateway", kernels, history }

    static func describe(_ grant: ResourceLedger.Grant) -> String {
        let gpus = grant.gpuIndices.isEmpty ? "" : " (GPU " + grant.gpuIndices.map(String.init).joined(separator: ", ") + ")"
        return grant.request.summary + gpus
    }

    /// Reads every kernel's model and the history.
    static func gather(registry: KernelRegistry, history: StatusHistory, sampleInterval: Duration, startedAt: Date,
                       now: Date = Date()) async -> StatusSnapshot {
        let hostName = ProcessInfo.processInfo.hostName
        var kernels: [Kernel] = []
        for kernel in await registry.list() {
            let model = await kernel.model()
            let activity = await kernel.activity()
            let provisioner = kernel.provisionerName
            kernels.append(Kernel(
                id: model.id, name: model.name, displayName: kernel.spec.file.displayName, user: kernel.username,
                executionState: model.executionState, connections: model.connections, lastActivity: model.lastActivity,
                idleSeconds: max(0, Int(now.timeIntervalSince(activity.lastActivity))), provisioner: provisioner,
                host: provisioner == "LocalProvisioner" ? hostName : await kernel.provisioner.details()["host"],
                process: await kernel.provisioner.describe(),
                resources: kernel.resources.map { Self.describe($0.grant) }, reason: model.reason))
        }
        let samples = history.samples
        let busy = kernels.filter { $0.executionState == "busy" }.count
        let idle = kernels.filter { $0.executionState == "idle" }.count
        let summary = Summary(
            gatewayVersion: ganymedeVersion, generatedAt: Timestamp.iso8601(now),
            uptimeSeconds: max(0, Int(now.timeIntervalSince(startedAt))), sampleIntervalSeconds: sampleInterval.seconds,
            historyWindowSeconds: sampleInterval.seconds * Double(history.capacity),
            kernels: kernels.count, busy: busy, idle: idle, other: kernels.count - busy - idle,
            connections: kernels.reduce(0) { $0 + $1.connections }, users: Set(kernels.map(\.user)).count,
            messagesPerSecond: samples.last?.messagesPerSecond)
        let points = samples.map {
            Point(time: Timestamp.iso8601($0.time), kernels: $0.kernels, busy: $0.busy, idle: $0.idle, other: $0.other,
                  messagesPerSecond: $0.messagesPerSecond)
        }
        return StatusSnapshot(summary: summary, kernels: kernels, history: points, samples: samples, now: now)
    }
}
