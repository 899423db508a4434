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

    init(cache: any BufferCache, superblock: Superblock, journal: (any OperationJournal)? = nil) {
        self.cache = cache
        sb = superblock
        log = WriteAheadLog(cache: cache, superblock: superblock, journal: journal)
        blocks = BlockAllocator(cache: cache, superblock: superblock, log: log)
        inodes = InodeTable(cache: cache, superblock: superblock, log: log)
    }

    /// Reads and validates the superblock of the device behind `cache`.
    static func readSuperblock(_ cache: any BufferCache) throws -> Superblock {
        let device = cache.device
        guard device.blockSize == Layout.blockSize, device.blockCount > Layout.superblockNumber else { throw Errno.EINVAL }
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: Layout.blockSize, alignment: 4096)
        defer { page.deallocate() }
        try device.read(block: Layout.superblockNumber, into: page)
        do {
            return try Superblock.decode(UnsafeRawBufferPointer(page), deviceBlocks: device.blockCount)
        } catch .notXv6, .unsupportedVersion {
            throw Errno.EINVAL
        } catch {
            throw Errno.EUCLEAN
        }
    }

    /// Largest number of data blocks one operation writes or frees, so that
    /// its bitmap, indirect and inode blocks fit the operation budget too.
    var blocksPerOperation: Int { (log.operationBudget - WriteAheadLog.metadataBlocks) / 2 }
}
