/// CPUs, memory and GPUs for one kernel: what a profile grants or a client asks for, and what a
/// backend is handed to map (Slurm's `--cpus-per-task`, `--mem`, `--gres`) or enforce (the
/// remote shell's limits). The gateway admits it against a host's ledger before the launch.
public struct ResourceRequest: Sendable, Equatable, Codable {
    public var cpus: Double?
    public var memoryBytes: Int64?
    public var gpus: Int?
    /// The Slurm partition a profile sends its kernels to (`slurm_partition` in the profile).
    public var partition: String?

    public init(cpus: Double? = nil, memoryBytes: Int64? = nil, gpus: Int? = nil, partition: String? = nil) {
        self.cpus = cpus
        self.memoryBytes = memoryBytes
        self.gpus = gpus
        self.partition = partition
    }

    public var isEmpty: Bool { cpus == nil && memoryBytes == nil && (gpus ?? 0) == 0 && partition == nil }

    enum CodingKeys: String, CodingKey { case cpus, memoryBytes = "memory_bytes", gpus, partition = "slurm_partition" }
}
