/// How much a finding matters: `info` is a normal state worth telling (a
/// pending log transaction), `error` an inconsistency.
public enum Severity: String, Sendable {
    case info
    case error
}

/// What a finding is about; tests and tools match on it rather than on the text.
public enum FindingKind: String, Sendable, CaseIterable {
    /// A block could not be read.
    case io
    /// The log: a pending transaction, or a committed one that cannot be replayed.
    case log
    /// An inode slot with a bad checksum, type or size; or inode 0 in use.
    case inodeCorrupt
    /// A block address outside the data area.
    case blockAddress
    /// A block held by two inodes (or twice by one).
    case duplicateBlock
    /// inode.blockCount differs from the blocks the inode holds.
    case blockCount
    /// A data block mapped past the file's size rounded up to a block.
    case beyondSize
    /// A size that the inode's type does not allow (directory, symlink).
    case fileSize
    /// A symlink target that is missing or holds NUL bytes.
    case symlink
    /// Blocks marked in use in the bitmap that nothing holds.
    case bitmapLeak
    /// Blocks in use but marked free in the bitmap: they could be handed out twice.
    case bitmapMissing
    /// A directory record that does not parse.
    case directoryRecord
    /// A directory block missing (a hole, or unusable address) within its size.
    case directoryHole
    /// A missing or wrong "." or ".." entry.
    case dotEntry
    /// A name with '/' or NUL.
    case badName
    /// Two entries with one name in a directory.
    case duplicateName
    /// An entry naming a free, out-of-range or corrupt inode.
    case danglingEntry
    /// An entry's type byte differs from the inode's type.
    case entryType
    /// A directory named by more than one entry.
    case directoryLinks
    /// Directories that name each other, or an entry naming the root.
    case directoryCycle
    /// The root inode is missing, corrupt or not a directory.
    case rootDirectory
    /// nlink differs from the directory entries (or subdirectories) counted.
    case linkCount
    /// An allocated inode that no directory reachable from the root names.
    case orphan
    /// An attribute block that does not decode, or one on an image
    /// without the xattr feature.
    case xattr
    /// Format features this checker does not know (info only: unknown
    /// incompat ones stop the check).
    case features
    /// Stands for findings left out of the list (the count is in the message).
    case omitted
}

/// One thing the checker found.
public struct Finding: Sendable, CustomStringConvertible {
    public var severity: Severity
    public var kind: FindingKind
    public var message: String
    /// True when the checker fixed it on the device.
    public var repaired: Bool
    /// The inode concerned, if any.
    public var inode: UInt32?
    /// The block concerned (or the first of a range), if any.
    public var block: UInt64?

    public init(severity: Severity, kind: FindingKind, message: String, repaired: Bool = false,
                inode: UInt32? = nil, block: UInt64? = nil) {
        self.severity = severity; self.kind = kind; self.message = message
        self.repaired = repaired; self.inode = inode; self.block = block
    }

    public var description: String {
        let status = switch (severity, repaired) {
        case (.info, false): "info"
        case (.info, true): "info, done"
        case (.error, false): "error, not fixed"
        case (.error, true): "error, fixed"
        }
        return "[\(status)] \(message)"
    }
}
