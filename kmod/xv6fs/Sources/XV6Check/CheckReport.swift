import XV6Layout

/// What a check found, and how the file system looked.
public struct CheckReport: Sendable, CustomStringConvertible {
    /// Set when the image could not be checked at all (unreadable, not xv6,
    /// unsupported version): the findings are then empty.
    public var operationalError: String?
    /// Findings in the order found; at most `Checker.maxFindingsPerKind` of
    /// each kind, the rest summed up in an `.omitted` finding.
    public var findings: [Finding] = []
    /// Errors fixed and errors left, counting omitted ones too.
    public var errorsCorrected = 0
    public var errorsLeft = 0
    /// The kinds of every error found, omitted ones included.
    public var errorKinds: Set<FindingKind> = []

    public var superblock: Superblock?
    /// The features some inode uses (an xattr block, a triple-indirect
    /// block or a size past 4 GiB, an unwritten block, a block past the
    /// size): what `fsck.xv6 --downgrade` may not remove.
    public var featuresInUse = FeatureSet()
    /// Allocated non-directory inodes (regular files, symlinks, devices, ...).
    public var files = 0
    public var directories = 0
    /// Allocated inodes, corrupt ones included.
    public var usedInodes = 0
    public var inodeCount: UInt32 = 0
    /// Blocks in use: metadata regions plus every block an inode holds.
    public var usedBlocks: UInt64 = 0
    public var totalBlocks: UInt64 = 0

    public init() {}

    /// No errors found and no operational error; info findings allowed.
    public var isClean: Bool { operationalError == nil && errorsCorrected == 0 && errorsLeft == 0 }

    public var errors: [Finding] { findings.filter { $0.severity == .error } }

    public func findings(_ kind: FindingKind) -> [Finding] { findings.filter { $0.kind == kind } }

    public func has(_ kind: FindingKind) -> Bool { findings.contains { $0.kind == kind } }

    /// fsck(8) exit status: 0 clean, 1 errors corrected, 4 errors left
    /// uncorrected, 8 operational error; 1 and 4 add up to 5 when both happen.
    public var exitCode: Int32 {
        if operationalError != nil { return 8 }
        return (errorsCorrected > 0 ? 1 : 0) | (errorsLeft > 0 ? 4 : 0)
    }

    /// One line: the counts and the outcome.
    public var summary: String {
        if let operationalError { return "cannot check: \(operationalError)" }
        let outcome = switch (errorsCorrected, errorsLeft) {
        case (0, 0): "clean"
        case (_, 0): "\(errorsCorrected) error(s) corrected"
        case (0, _): "\(errorsLeft) error(s) left uncorrected"
        default: "\(errorsCorrected) error(s) corrected, \(errorsLeft) left uncorrected"
        }
        return "\(files) files, \(directories) directories, \(usedInodes)/\(inodeCount) inodes, "
            + "\(usedBlocks)/\(totalBlocks) blocks: \(outcome)"
    }

    public var description: String {
        (findings.map(\.description) + [summary]).joined(separator: "\n")
    }
}
