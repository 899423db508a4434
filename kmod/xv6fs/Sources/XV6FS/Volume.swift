import BentoKit
import XV6Layout

/// One mounted xv6 file system: the layers xv6 stacks in kernel/fs.c, each
/// in its own file. Callers hold the file system lock.
final class Volume {
    let cache: any BufferCache
    let sb: Superblock
    let log: WriteAheadLog
    let blocks: BlockAllocator
    let inodes: InodeTable
    /// The features the image uses now: `sb.features` plus those set since
    /// (`useFeature`).
    var features: FeatureSet
    /// Whether this version may use the data features (the triple-indirect
    /// block, preallocation, SEEK_DATA/SEEK_HOLE): version 3 and later.
    var dataFeatures = false

    init(cache: any BufferCache, superblock: Superblock, journal: (any OperationJournal)? = nil) {
        self.cache = cache
        sb = superblock
        features = superblock.features
        log = WriteAheadLog(cache: cache, superblock: superblock, journal: journal)
        blocks = BlockAllocator(cache: cache, superblock: superblock, log: log)
        inodes = InodeTable(cache: cache, superblock: superblock, log: log)
    }

    /// Reads and validates the superblock of the device behind `cache`,
    /// through the cache: a feature bit set in the open transaction is
    /// there only.
    static func readSuperblock(_ cache: any BufferCache) throws -> Superblock {
        let device = cache.device
        guard device.blockSize == Layout.blockSize, device.blockCount > Layout.superblockNumber else { throw Errno.EINVAL }
        let decoded = try cache.withBlock(Layout.superblockNumber) { decode($0, deviceBlocks: device.blockCount) }
        switch decoded {
        case .success(let sb): return sb
        case .failure(.notXv6), .failure(.unsupportedVersion): throw Errno.EINVAL
        case .failure: throw Errno.EUCLEAN
        }
    }

    /// Superblock.decode as a Result (typed throws inside closures trips
    /// the compiler).
    private static func decode(_ page: UnsafeRawBufferPointer, deviceBlocks: UInt64) -> Result<Superblock, Superblock.DecodeError> {
        do throws(Superblock.DecodeError) {
            return .success(try Superblock.decode(page, deviceBlocks: deviceBlocks))
        } catch {
            return .failure(error)
        }
    }

    /// The first use of a feature sets its bit in the superblock, in the
    /// current transaction: the change that needs it and the bit reach the
    /// disk together. True if this set the bit.
    @discardableResult
    func useFeature(_ feature: Feature) throws -> Bool {
        guard !features.contains(feature) else { return false }
        var updated = try Self.readSuperblock(cache)
        updated.features.insert(feature)
        try cache.withMutableBlock(Layout.superblockNumber) { updated.encode(into: $0) }
        log.record(Layout.superblockNumber)
        features.insert(feature)
        return true
    }

    /// The largest file this version makes: with the data features, what
    /// the triple-indirect block reaches.
    var maxFileSize: UInt64 { dataFeatures ? Layout.maxBigFileSize : Layout.maxFileSize }

    /// Largest number of data blocks one operation writes or frees, so that
    /// its bitmap, indirect and inode blocks fit the operation budget too.
    var blocksPerOperation: Int { (log.operationBudget - WriteAheadLog.metadataBlocks) / 2 }
}
