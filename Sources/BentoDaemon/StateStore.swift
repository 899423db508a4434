import BentoControl
import BentoServices
import BentoWorker
import FoundationEssentials
import Glibc

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
        /// A mount added by `mount -t xv6` (not in the config): its
        /// settings, so that a restarted daemon takes it over too.
        var added: MountSettings?
    }

    let directory: String
    private var mounts: [String: MountRecord] = [:]
    private let lock = PthreadMutex()
    /// Hears of every failure to save: the daemon logs it.
    private let report: (String) -> Void
    private var mountsFile: String { directory + "/mounts.json" }
    private var historyFile: String { directory + "/history.jsonl" }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Opens the state directory. A record file that cannot be read is an
    /// error, not an empty record: the file is left as it is for a person
    /// to look at.
    init(directory: String, report: @escaping (String) -> Void = { _ in }) throws {
        self.directory = directory
        self.report = report
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        if let data = FileManager.default.contents(atPath: mountsFile) {
            do { mounts = try JSONDecoder().decode([String: MountRecord].self, from: data) } catch {
                throw Failure(description: "\(mountsFile) is not readable (\(error)); it is left as it is")
            }
        }
    }

    func record(_ mountpoint: String) -> MountRecord? { lock.withLock { mounts[mountpoint] } }

    /// The settings of every mount `mount -t xv6` added.
    func addedMounts() -> [MountSettings] { lock.withLock { mounts.values.compactMap(\.added) } }

    func update(_ mountpoint: String, _ change: (inout MountRecord?) -> Void) {
        lock.withLock {
            var record = mounts[mountpoint]
            change(&record)
            mounts[mountpoint] = record
            do { try save() } catch { report("\(mountsFile): not saved: \(error)") }
        }
    }

    /// Written whole to a new file, synced, then renamed over the old and
    /// the directory synced: a crash leaves one or the other, never half.
    private func save() throws {
        let data = try JSONEncoder().encode(mounts)
        let temporary = mountsFile + ".new"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count else { throw Failure(description: "write: \(String(cString: strerror(errno)))") }
        guard fsync(fd) == 0 else { throw Failure(description: "fsync: \(String(cString: strerror(errno)))") }
        guard rename(temporary, mountsFile) == 0 else { throw Failure(description: "rename: \(String(cString: strerror(errno)))") }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 { fsync(dir); close(dir) }
    }

    func appendHistory(_ report: UpgradeReport) {
        guard var line = try? JSONEncoder().encode(report) else { return }
        line.append(0x0A)
        lock.withLock {
            let fd = open(historyFile, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { self.report("\(historyFile): \(String(cString: strerror(errno)))"); return }
            defer { close(fd) }
            let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written != line.count || fsync(fd) != 0 { self.report("\(historyFile): not saved: \(String(cString: strerror(errno)))") }
        }
    }

    /// Past upgrades and rollbacks, oldest first.
    func history(mountpoint: String?) -> [UpgradeReport] {
        guard let data = lock.withLock({ FileManager.default.contents(atPath: historyFile) }) else { return [] }
        return data.split(separator: 0x0A).compactMap { try? JSONDecoder().decode(UpgradeReport.self, from: $0) }
            .filter { mountpoint == nil || $0.mountpoint == mountpoint }
    }
}
