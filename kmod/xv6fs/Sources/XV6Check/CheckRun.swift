import BentoKit
import XV6Layout

/// What pass 1 learns about a directory for pass 2.
struct DirectoryShape {
    var size: UInt64
    /// Usable data blocks within the size, in file order: (file block, address).
    var blocks: [(index: UInt64, address: UInt32)]
    /// Some block within the size is a hole or had an unusable address.
    var incomplete: Bool
}

/// What parsing a directory found, for the tree and link checks.
struct DirectoryContents {
    var dotdot: UInt32?
    /// Entries (other than "." and "..") naming directories.
    var subdirectories: UInt32 = 0
}

/// One run of the checker over an image whose superblock is valid. The passes
/// live in extensions, one file each; this holds what they share.
final class CheckRun {
    let sb: Superblock
    /// The features some inode uses, as the inode scan finds them.
    var featuresInUse = FeatureSet()
    /// The features the image uses: the superblock's, as the log leaves it
    /// (a first use sets a bit through the log).
    var features: FeatureSet
    let reader: ImageReader
    let readOnly: Bool
    var log: FindingLog
    let progress: (@Sendable (CheckProgress) -> Void)?

    // Per inode, indexed by inode number.
    /// Mode of each allocated inode that decoded; 0 for free or corrupt ones.
    var modes: [UInt32]
    var nlinks: [UInt32]
    /// Directory entries naming the inode, "." and ".." excepted.
    var names: [UInt32]
    /// Slots that failed to decode or could not be read.
    var corrupt: Bitset
    /// Reachable from the root.
    var reached: Bitset

    /// Data blocks held by some inode (indirect blocks included).
    var claimed: Bitset

    var shapes: [UInt32: DirectoryShape] = [:]
    var contents: [UInt32: DirectoryContents] = [:]
    /// The directory through which each directory was first found.
    var parents: [UInt32: UInt32] = [:]

    /// Some block map could not be followed completely, so blocks that look
    /// leaked may belong to it: leaks are then reported but not freed.
    var blockMapsDamaged = false
    /// Some directory could not be read completely, so entries may be
    /// missing from the counts: link counts are then only raised.
    var treeDamaged = false
    var rootIsDirectory = false

    /// A committed, already installed log transaction: cleared before the
    /// first repair, so that a later mount cannot replay it over the repairs.
    var installedLogHeader: LogHeader?
    /// Repairs written and not yet flushed.
    var unflushed = false
    private var failedReads: Set<UInt64> = []

    init(device: any BlockDevice, superblock: Superblock, options: Checker) {
        sb = superblock
        features = superblock.features
        reader = ImageReader(device: device)
        readOnly = options.readOnly
        progress = options.progress
        log = FindingLog(limit: options.maxFindingsPerKind)
        let count = Int(superblock.inodeCount)
        modes = [UInt32](repeating: 0, count: count)
        nlinks = [UInt32](repeating: 0, count: count)
        names = [UInt32](repeating: 0, count: count)
        corrupt = Bitset(count: UInt64(count))
        reached = Bitset(count: UInt64(count))
        claimed = Bitset(count: superblock.totalBlocks)
    }

    func run() -> CheckReport {
        checkLog()
        if let bytes = readBlock(Layout.superblockNumber, "superblock"),
           case .success(let replayed) = bytes.withUnsafeBytes({ decodeSuperblock($0, deviceBlocks: sb.totalBlocks) }) {
            features = replayed.features
        }
        scanInodes()
        checkDirectoryTree()
        // Passes 3 and 4 work in memory: quick, told only as done.
        checkOrphans()
        tick(3, 1, of: 1)
        checkLinkCounts()
        tick(4, 1, of: 1)
        let usedBlocks = checkBitmap()
        if unflushed && !reader.flush() {
            error(.io, "flushing the repairs to the device failed: they may not be durable")
        }
        return report(usedBlocks: usedBlocks)
    }

    private func report(usedBlocks: UInt64) -> CheckReport {
        var report = CheckReport()
        report.findings = log.finished()
        report.errorsCorrected = log.corrected
        report.errorsLeft = log.left
        report.errorKinds = log.errorKinds
        report.superblock = sb
        report.featuresInUse = featuresInUse
        report.inodeCount = sb.inodeCount
        report.totalBlocks = sb.totalBlocks
        report.usedBlocks = usedBlocks
        for ino in 1..<Int(sb.inodeCount) where modes[ino] != 0 {
            if modes[ino] & FileMode.typeMask == FileMode.directory { report.directories += 1 } else { report.files += 1 }
        }
        report.usedInodes = report.files + report.directories + Int(corrupt.population)
        return report
    }

    // MARK: - Shared helpers

    /// Tells the progress callback, if any, how far `pass` is.
    func tick(_ pass: Int, _ current: UInt64, of total: UInt64) {
        progress?(CheckProgress(pass: pass, current: current, total: total))
    }

    func error(_ kind: FindingKind, _ message: String, repaired: Bool = false,
               inode: UInt32? = nil, block: UInt64? = nil) {
        log.add(Finding(severity: .error, kind: kind, message: message, repaired: repaired, inode: inode, block: block))
    }

    func info(_ kind: FindingKind, _ message: String, repaired: Bool = false,
              inode: UInt32? = nil, block: UInt64? = nil) {
        log.add(Finding(severity: .info, kind: kind, message: message, repaired: repaired, inode: inode, block: block))
    }

    /// Reads a block, reporting an I/O error once per block.
    func readBlock(_ block: UInt64, _ what: String) -> [UInt8]? {
        if let bytes = reader.read(block) { return bytes }
        if failedReads.insert(block).inserted {
            error(.io, "cannot read block \(block) (\(what))", block: block)
        }
        return nil
    }

    func isDirectory(_ ino: UInt32) -> Bool {
        ino < sb.inodeCount && modes[Int(ino)] & FileMode.typeMask == FileMode.directory
    }

    func typeName(_ mode: UInt32) -> String {
        switch mode & FileMode.typeMask {
        case FileMode.regular: "regular file"
        case FileMode.directory: "directory"
        case FileMode.symlink: "symlink"
        case FileMode.characterDevice: "character device"
        case FileMode.blockDevice: "block device"
        case FileMode.fifo: "fifo"
        case FileMode.socket: "socket"
        default: "inode of unknown type"
        }
    }
}

extension UInt32 {
    /// Adds one without trapping at the top.
    func incremented() -> UInt32 { self == .max ? self : self + 1 }
}
