/// fsck -p (preen): repair without asking only what cannot lose data, as
/// a boot-time check does; anything else waits for a person.
public enum Preen {
    /// Errors preen repairs. Each is a count or a bitmap bit recomputed from
    /// what the inodes and directories say, and the checker repairs it only
    /// when those could be read in full. (A committed log transaction is
    /// replayed too, as a mount would; that is an info finding.)
    public static let safeKinds: Set<FindingKind> = [.bitmapMissing, .bitmapLeak, .blockCount, .linkCount]

    /// The kinds of error in a read-only check that a person must decide
    /// about; empty when preen may go ahead and repair.
    public static func needsPerson(_ report: CheckReport) -> Set<FindingKind> {
        report.errorKinds.subtracting(safeKinds)
    }
}
