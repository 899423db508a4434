import BentoKit
import XV6Layout

/// Checks (and optionally repairs) an xv6 image on a block device, reading
/// raw blocks itself.
///
///     let report = Checker(readOnly: true).check(device)
///     if !report.isClean { print(report) }
///
/// Read-only mode never writes. Otherwise the checker replays a committed
/// log transaction, then fixes the bitmap, link counts and inode block
/// counts straight on the device, and flushes; everything else it reports
/// and leaves alone.
public struct Checker: Sendable {
    public var readOnly: Bool
    /// How many findings of one kind to list; the rest are only counted.
    public var maxFindingsPerKind: Int
    /// Called as the check goes, from the checking thread (often: throttle).
    public var progress: (@Sendable (CheckProgress) -> Void)?

    public init(readOnly: Bool = true, maxFindingsPerKind: Int = 1000) {
        self.readOnly = readOnly
        self.maxFindingsPerKind = maxFindingsPerKind
    }

    public func check(_ device: any BlockDevice) -> CheckReport {
        switch loadSuperblock(device) {
        case .failure(let problem):
            var report = CheckReport()
            report.operationalError = problem.message
            return report
        case .success(let superblock):
            return CheckRun(device: device, superblock: superblock, options: self).run()
        }
    }
}
