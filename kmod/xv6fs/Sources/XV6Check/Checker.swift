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

    /// The format features this checker understands. An image
    /// with another incompat feature is not checked at all, one with another
    /// ro_compat feature only read-only (its repairs could damage what the
    /// feature keeps); other compat features are named in an info finding.
    public static let knownFeatures = FeatureSet([.xattr, .bigfile, .unwritten, .keepSize])

    public func check(_ device: any BlockDevice) -> CheckReport {
        switch loadSuperblock(device) {
        case .failure(let problem):
            var report = CheckReport()
            report.operationalError = problem.message
            return report
        case .success(let superblock):
            var report = CheckReport()
            report.superblock = superblock
            let unknown = superblock.features.subtracting(Self.knownFeatures)
            switch superblock.features.support(knowing: Self.knownFeatures) {
            case .refused(let incompat):
                report.operationalError = UnsupportedFeatures(unknown: incompat, reader: "fsck.xv6").description
                return report
            case .readOnly(let roCompat) where !readOnly:
                report.operationalError = "the image uses ro_compat features fsck.xv6 does not know "
                    + "(\(roCompat.description)): not repairing it (-n checks it)"
                return report
            case .readOnly, .readWrite:
                var report = CheckRun(device: device, superblock: superblock, options: self).run()
                if !unknown.isEmpty {
                    report.findings.insert(Finding(severity: .info, kind: .features,
                                                   message: "features this fsck.xv6 does not check: \(unknown.description)"), at: 0)
                }
                return report
            }
        }
    }
}
