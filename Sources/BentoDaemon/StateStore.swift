import BentoControl
import Foundation

/// The daemon's state directory: what each mount serves, an upgrade in
/// progress, and the upgrade history. Kept on disk so that a daemon that
/// stops or dies, even in the middle of an upgrade, comes back knowing.
final class StateStore: @unchecked Sendable {
    struct MountRecord: Codable {
        /// The module file serving now.
        var module: String
        /// The module the config named when `module` was chosen: if the
        /// config names another since, the config wins.
        var configModule: String
        /// The module served before the last upgrade, for rollback.
        var previous: String?
        /// Set from an upgrade's start to its end: the module it left.
        var upgradingFrom: String?
        /// Module files that failed on probation, with why: refused by
        /// later upgrades until forced.
        var failedModules: [String: String]?
    }

    let directory: String
    private var mounts: [String: MountRecord] = [:]
    private let lock = NSLock()
    private var mountsFile: String { directory + "/mounts.json" }
    private var historyFile: String { directory + "/history.jsonl" }

    init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        if let data = FileManager.default.contents(atPath: mountsFile) {
            mounts = (try? JSONDecoder().decode([String: MountRecord].self, from: data)) ?? [:]
        }
    }

    func record(_ mountpoint: String) -> MountRecord? { lock.withLock { mounts[mountpoint] } }

    func update(_ mountpoint: String, _ change: (inout MountRecord?) -> Void) {
        lock.withLock {
            var record = mounts[mountpoint]
            change(&record)
            mounts[mountpoint] = record
            save()
        }
    }

    /// Written whole to a new file, then renamed over the old: a crash
    /// leaves one or the other, never half.
    private func save() {
        guard let data = try? JSONEncoder().encode(mounts) else { return }
        let temporary = mountsFile + ".new"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]),
              let handle = FileHandle(forWritingAtPath: temporary) else { return }
        try? handle.synchronize()
        try? handle.close()
        _ = rename(temporary, mountsFile)
    }

    func appendHistory(_ report: UpgradeReport) {
        guard var line = try? JSONEncoder().encode(report) else { return }
        line.append(0x0A)
        lock.withLock {
            if !FileManager.default.fileExists(atPath: historyFile) {
                FileManager.default.createFile(atPath: historyFile, contents: nil, attributes: [.posixPermissions: 0o600])
            }
            guard let handle = FileHandle(forWritingAtPath: historyFile) else { return }
            _ = try? handle.seekToEnd()
            try? handle.write(contentsOf: line)
            try? handle.synchronize()
            try? handle.close()
        }
    }

    /// Past upgrades and rollbacks, oldest first.
    func history(mountpoint: String?) -> [UpgradeReport] {
        guard let data = lock.withLock({ FileManager.default.contents(atPath: historyFile) }) else { return [] }
        return data.split(separator: 0x0A).compactMap { try? JSONDecoder().decode(UpgradeReport.self, from: $0) }
            .filter { mountpoint == nil || $0.mountpoint == mountpoint }
    }
}
