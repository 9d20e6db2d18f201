import Foundation
import JupyterProtocol
import Logging
import Provisioning

/// One kernel as persisted for re-attach after a gateway restart.
struct KernelSessionRecord: Codable, Sendable, Equatable {
    var kernelID: String
    var kernelspec: String
    var username: String
    var connection: ConnectionInfo
    var handle: KernelHandle
    /// The `env` of the start request, so a restart after re-attach builds the same
    /// environment under today's rules (the gateway's own variables are not stored).
    var clientEnv: [String: String]?
    /// Users the owner shared the kernel with; absent in records of earlier versions.
    var sharedWith: [String]?
    var savedAt: Date

    enum CodingKeys: String, CodingKey {
        case kernelID = "kernel_id", kernelspec, username, connection, handle, clientEnv = "client_env"
        case sharedWith = "shared_with", savedAt = "saved_at"
    }
}

/// EG's `FileKernelSessionManager` in spirit (EG_KERNEL_SESSION_PERSISTENCE,
/// EG_PERSISTENCE_ROOT): one JSON file per kernel under a private directory, written to a
/// temporary file and renamed so a crash never leaves half a record. The files hold
/// connection keys, so the directory is 0700 and the files 0600.
struct KernelSessionStore: Sendable {
    let directory: String
    let logger: Logger

    init(directory: String, logger: Logger) {
        self.directory = directory
        self.logger = logger
    }

    private func path(_ id: String) -> String { "\(directory)/\(id).json" }

    func save(_ record: KernelSessionRecord) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = [.sortedKeys]
            let data = try encoder.encode(record)
            let tmp = path(record.kernelID) + ".tmp"
            let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission) }
            let written = data.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            fsync(fd)
            close(fd)
            guard written == data.count, rename(tmp, path(record.kernelID)) == 0 else { throw CocoaError(.fileWriteUnknown) }
        } catch {
            logger.error("cannot persist kernel session", metadata: ["kernel_id": "\(record.kernelID)", "error": "\(error)"])
        }
    }

    func remove(_ id: String) {
        unlink(path(id))
    }

    /// Every readable record; unreadable files are logged and moved aside, not deleted.
    func loadAll() -> [KernelSessionRecord] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        var out: [KernelSessionRecord] = []
        for name in names.sorted() where name.hasSuffix(".json") {
            let file = "\(directory)/\(name)"
            guard let data = FileManager.default.contents(atPath: file),
                  let record = try? decoder.decode(KernelSessionRecord.self, from: data),
                  name == "\(record.kernelID).json" else {
                logger.error("unreadable kernel session record moved aside", metadata: ["file": "\(file)"])
                rename(file, file + ".bad")
                continue
            }
            out.append(record)
        }
        return out
    }
}
