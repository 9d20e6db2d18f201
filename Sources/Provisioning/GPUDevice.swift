import Foundation

/// A GPU of a host, as `nvidia-smi --query-gpu=index,uuid,name --format=csv,noheader` lists it
/// (the gateway host's, or an SSH host's asked over SSH).
public struct GPUDevice: Sendable, Codable, Equatable {
    public var index: Int
    public var uuid: String
    public var name: String

    public init(index: Int, uuid: String, name: String) {
        self.index = index
        self.uuid = uuid
        self.name = name
    }

    public static let nvidiaSMIArguments = ["--query-gpu=index,uuid,name", "--format=csv,noheader"]

    /// nvidia-smi's CSV lines; anything else (a blank line, another tool's words) is skipped.
    public static func parse<S: StringProtocol>(_ csv: S) -> [GPUDevice] {
        csv.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ",", maxSplits: 2).map { $0.trimmingCharacters(in: .whitespaces) }
            guard f.count == 3, let index = Int(f[0]) else { return nil }
            return GPUDevice(index: index, uuid: f[1], name: f[2])
        }
    }
}
