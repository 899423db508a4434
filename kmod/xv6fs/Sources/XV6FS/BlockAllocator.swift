import BentoKit
import XV6Layout

/// The free-block bitmap, with a hint where the next search starts and a
/// count of free blocks kept in memory (computed at mount).
final class BlockAllocator {
    let cache: any BufferCache
    let sb: Superblock
    let log: WriteAheadLog
    var hint: UInt32
    var freeCount: UInt64 = 0
    /// The last free blocks only provenance records may take (version 2:
    /// Provenance.swift), so that recording does not run out before the
    /// data does.
    var reserved: UInt64 = 0
    /// Set while a provenance record is appended.
    var mayUseReserve = false
    /// Free blocks anything may take.
    var available: UInt64 { freeCount - min(freeCount, reserved) }

    init(cache: any BufferCache, superblock: Superblock, log: WriteAheadLog) {
        self.cache = cache
        self.sb = superblock
        self.log = log
        hint = superblock.dataStart
    }

    /// Counts free data blocks: at mount.
    func countFree() throws {
        var free: UInt64 = 0
        for i in 0..<UInt64(sb.bitmapBlocks) {
            let first = i * UInt64(Layout.bitsPerBlock)
            let end = min(sb.totalBlocks, first + UInt64(Layout.bitsPerBlock))
            guard first < end else { break }
            try cache.withBlock(UInt64(sb.bitmapStart) + i) { bits in
                var used = 0
                let fullBytes = Int(end - first) / 8
                for j in 0..<fullBytes { used += bits[j].nonzeroBitCount }
                for bit in (fullBytes * 8)..<Int(end - first) where bits[bit / 8] & UInt8(1 << (bit % 8)) != 0 { used += 1 }
                free += UInt64(Int(end - first) - used)
            }
        }
        freeCount = free
    }

    /// Allocates a data block and records the bitmap change. The caller
    /// initializes the block's contents.
    func allocate() throws -> UInt32 {
        guard freeCount > (mayUseReserve ? 0 : reserved) else { throw Errno.ENOSPC }
        let dataBlocks = sb.totalBlocks - UInt64(sb.dataStart)
        var candidate = UInt64(hint < sb.dataStart || UInt64(hint) >= sb.totalBlocks ? sb.dataStart : hint)
        var scanned: UInt64 = 0
        while scanned < dataBlocks + UInt64(Layout.bitsPerBlock) {
            let bitmapIndex = candidate / UInt64(Layout.bitsPerBlock)
            let firstInBlock = bitmapIndex * UInt64(Layout.bitsPerBlock)
            let endInBlock = min(sb.totalBlocks, firstInBlock + UInt64(Layout.bitsPerBlock))
            let bitmapBlock = UInt64(sb.bitmapStart) + bitmapIndex
            let found: UInt64? = try cache.withBlock(bitmapBlock) { bits in
                var b = candidate
                while b < endInBlock {
                    let local = Int(b - firstInBlock)
                    if local & 7 == 0, bits[local >> 3] == 0xFF, b + 8 <= endInBlock { b += 8; continue }
                    if bits[local >> 3] & UInt8(1 << (local & 7)) == 0 { return b }
                    b += 1
                }
                return nil
            }
            if let block = found {
                try cache.withMutableBlock(bitmapBlock) { bits in
                    let local = Int(block - firstInBlock)
                    bits[local >> 3] |= UInt8(1 << (local & 7))
                }
                log.record(bitmapBlock)
                freeCount -= 1
                hint = UInt32(block + 1)
                return UInt32(block)
            }
            scanned += endInBlock - candidate
            candidate = endInBlock >= sb.totalBlocks ? UInt64(sb.dataStart) : endInBlock
        }
        freeCount = 0  // the count was off: the bitmap is full
        throw Errno.ENOSPC
    }

    /// Frees a data block and records the bitmap change.
    func free(_ block: UInt32) throws { try free(CollectionOfOne(block)) }

    /// Frees data blocks and records the bitmap changes, with one cache
    /// access for each run of blocks in the same bitmap block (a file's
    /// blocks mostly lie together). Freeing a free block is corruption:
    /// the others are freed all the same, then EUCLEAN.
    func free<Blocks: Sequence<UInt32>>(_ blocks: Blocks) throws {
        var rest = blocks.makeIterator()
        var next = rest.next()
        var freedAFreeBlock = false
        let perBitmapBlock = UInt64(Layout.bitsPerBlock)
        while let first = next {
            guard sb.isDataBlock(first) else { throw Errno.EUCLEAN }
            let bitmapBlock = UInt64(sb.bitmapStart) + UInt64(first) / perBitmapBlock
            try cache.withMutableBlock(bitmapBlock) { bits in
                while let block = next, sb.isDataBlock(block),
                      UInt64(sb.bitmapStart) + UInt64(block) / perBitmapBlock == bitmapBlock {
                    let local = Int(UInt64(block) % perBitmapBlock)
                    let mask = UInt8(1 << (local & 7))
                    if bits[local >> 3] & mask != 0 {
                        bits[local >> 3] &= ~mask
                        freeCount += 1
                        if block < hint { hint = block }
                    } else {
                        freedAFreeBlock = true
                    }
                    next = rest.next()
                }
            }
            log.record(bitmapBlock)
        }
        if freedAFreeBlock { throw Errno.EUCLEAN }
    }
}
