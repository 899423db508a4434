import BentoKit
import XV6Layout

/// File contents: mapping file blocks to disk blocks through the direct,
/// indirect and double-indirect addresses (xv6's bmap), reading, writing and
/// truncating.
extension Volume {
    private static let direct = UInt64(Layout.directCount)
    private static let perBlock = UInt64(Layout.addressesPerBlock)

    /// A fresh zeroed block for an indirect table or file data.
    private func allocateZeroed(_ inode: Inode) throws -> UInt32 {
        let block = try blocks.allocate()
        try cache.withMutableBlock(UInt64(block), fill: .zero) { _ in }
        log.record(UInt64(block))
        inode.disk.blockCount &+= 1
        return block
    }

    /// Reads an address from an indirect block, checking it points at data.
    private func address(in table: UInt32, at index: Int) throws -> UInt32 {
        let value = try cache.withBlock(UInt64(table)) { $0.u32(4 * index) }
        guard value == 0 || sb.isDataBlock(value) else { throw Errno.EUCLEAN }
        return value
    }

    private func setAddress(in table: UInt32, at index: Int, to value: UInt32) throws {
        try cache.withMutableBlock(UInt64(table)) { $0.set(4 * index, value) }
        log.record(UInt64(table))
    }

    /// The table block at a slot, allocated on demand when `allocate`.
    private func table(_ current: UInt32, _ inode: Inode, allocate: Bool, store: (UInt32) throws -> Void) throws -> UInt32 {
        if current != 0 {
            guard sb.isDataBlock(current) else { throw Errno.EUCLEAN }
            return current
        }
        guard allocate else { return 0 }
        let block = try allocateZeroed(inode)
        try store(block)
        return block
    }

    /// The disk block holding file block `n`, or 0 for a hole. With
    /// `allocate`, holes get a zeroed block; `fresh` tells whether it is new.
    func map(_ inode: Inode, _ n: UInt64, allocate: Bool) throws -> (block: UInt32, fresh: Bool) {
        var n = n
        if n < Self.direct {
            let current = inode.disk.direct[Int(n)]
            if current != 0 {
                guard sb.isDataBlock(current) else { throw Errno.EUCLEAN }
                return (current, false)
            }
            guard allocate else { return (0, false) }
            let block = try blocks.allocate()
            inode.disk.blockCount &+= 1
            inode.disk.direct[Int(n)] = block
            return (block, true)
        }
        n -= Self.direct
        var leafTable: UInt32
        if n < Self.perBlock {
            leafTable = try table(inode.disk.indirect, inode, allocate: allocate) { inode.disk.indirect = $0 }
        } else {
            n -= Self.perBlock
            guard n < Self.perBlock * Self.perBlock else { throw Errno.EFBIG }
            let top = try table(inode.disk.doubleIndirect, inode, allocate: allocate) { inode.disk.doubleIndirect = $0 }
            guard top != 0 else { return (0, false) }
            let slot = Int(n / Self.perBlock)
            leafTable = try table(try address(in: top, at: slot), inode, allocate: allocate) {
                try setAddress(in: top, at: slot, to: $0)
            }
            n %= Self.perBlock
        }
        guard leafTable != 0 else { return (0, false) }
        let current = try address(in: leafTable, at: Int(n))
        if current != 0 { return (current, false) }
        guard allocate else { return (0, false) }
        let block = try blocks.allocate()
        inode.disk.blockCount &+= 1
        try setAddress(in: leafTable, at: Int(n), to: block)
        return (block, true)
    }

    /// Reads from `offset`; returns the byte count (short at end of file).
    func read(_ inode: Inode, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let size = inode.disk.size
        guard offset < size, buffer.count > 0 else { return 0 }
        let total = Int(min(UInt64(buffer.count), size - offset))
        let bs = UInt64(Layout.blockSize)
        var done = 0
        while done < total {
            let position = offset + UInt64(done)
            let within = Int(position % bs)
            let count = min(total - done, Layout.blockSize - within)
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + count])
            let block = try map(inode, position / bs, allocate: false).block
            if block == 0 {
                target.initializeMemory(as: UInt8.self, repeating: 0)
            } else {
                try cache.withBlock(UInt64(block)) { data in
                    target.copyMemory(from: UnsafeRawBufferPointer(rebasing: data[within..<within + count]))
                }
            }
            done += count
        }
        return total
    }

    /// Writes `data` at `offset` within the current operation, at most
    /// `blocksPerOperation` blocks' worth. Returns the count written.
    func writeChunk(_ inode: Inode, offset: UInt64, data: UnsafeRawBufferPointer, now: Timespec) throws -> Int {
        let bs = UInt64(Layout.blockSize)
        var done = 0
        var blocksTouched = 0
        defer {
            // Even a failed chunk keeps what it wrote and the blocks it mapped;
            // the size grows only over bytes stored (a full disk must not
            // leave a size that covers data it could not hold).
            let end = offset + UInt64(done)
            if done > 0 && end > inode.disk.size { inode.disk.size = end }
            inode.disk.mtime = now
            inode.disk.ctime = now
            try? inodes.update(inode)
        }
        while done < data.count && blocksTouched < blocksPerOperation {
            let position = offset + UInt64(done)
            let within = Int(position % bs)
            let count = min(data.count - done, Layout.blockSize - within)
            let mapped: (block: UInt32, fresh: Bool)
            do { mapped = try map(inode, position / bs, allocate: true) } catch {
                // Out of blocks part way: report what was stored, as a short
                // write; the next call gets the error.
                if done > 0 { break }
                throw error
            }
            let (block, fresh) = mapped
            let whole = count == Layout.blockSize
            try cache.withMutableBlock(UInt64(block), fill: fresh || whole ? .zero : .read) { target in
                UnsafeMutableRawBufferPointer(rebasing: target[within..<within + count])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: data[done..<done + count]))
            }
            log.record(UInt64(block))
            done += count
            blocksTouched += 1
        }
        return done
    }

    /// Frees file blocks from index `first` up, highest first, within one
    /// operation's budget. Returns true once none remain; otherwise the
    /// lowest block index freed so far, so the caller can shrink the size.
    func freeTail(_ inode: Inode, from first: UInt64) throws -> (done: Bool, lowestFreed: UInt64) {
        var budget = blocksPerOperation
        var lowest = UInt64.max
        func release(_ block: UInt32) throws {
            try blocks.free(block)
            cache.discard(UInt64(block))
            inode.disk.blockCount = inode.disk.blockCount > 0 ? inode.disk.blockCount - 1 : 0
            budget -= 1
        }
        // Frees the entries of one table that map file blocks >= first,
        // highest first; its entries start at file block `base`. Returns
        // false when the budget ran out first.
        func freeEntries(_ table: UInt32, base: UInt64, leaf: Bool) throws -> Bool {
            let step = leaf ? 1 : Self.perBlock
            var i = Int(Self.perBlock) - 1
            while i >= 0 {
                let start = base + UInt64(i) * step
                if start + step <= first { break }
                let entry = try address(in: table, at: i)
                if entry != 0 {
                    if !leaf {
                        guard try freeEntries(entry, base: start, leaf: true) else { return false }
                    }
                    if start >= first {
                        guard budget > 0 else { return false }
                        try release(entry)
                        lowest = min(lowest, start)
                        try setAddress(in: table, at: i, to: 0)
                    }
                }
                i -= 1
            }
            return true
        }
        let indirectBase = Self.direct
        let doubleBase = Self.direct + Self.perBlock
        if inode.disk.doubleIndirect != 0 && first < doubleBase + Self.perBlock * Self.perBlock {
            guard sb.isDataBlock(inode.disk.doubleIndirect) else { throw Errno.EUCLEAN }
            guard try freeEntries(inode.disk.doubleIndirect, base: doubleBase, leaf: false) else { return (false, lowest) }
            if doubleBase >= first {
                guard budget > 0 else { return (false, lowest) }
                try release(inode.disk.doubleIndirect)
                inode.disk.doubleIndirect = 0
            }
        }
        if inode.disk.indirect != 0 && first < doubleBase {
            guard sb.isDataBlock(inode.disk.indirect) else { throw Errno.EUCLEAN }
            guard try freeEntries(inode.disk.indirect, base: indirectBase, leaf: true) else { return (false, lowest) }
            if indirectBase >= first {
                guard budget > 0 else { return (false, lowest) }
                try release(inode.disk.indirect)
                inode.disk.indirect = 0
            }
        }
        if first < indirectBase {
            var i = Layout.directCount - 1
            while i >= Int(first) {
                let entry = inode.disk.direct[i]
                if entry != 0 {
                    guard sb.isDataBlock(entry) else { throw Errno.EUCLEAN }
                    guard budget > 0 else { return (false, lowest) }
                    try release(entry)
                    inode.disk.direct[i] = 0
                    lowest = min(lowest, UInt64(i))
                }
                i -= 1
            }
        }
        return (true, lowest)
    }
}
