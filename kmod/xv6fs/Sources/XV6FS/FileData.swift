import BentoKit
import XV6Layout

/// File contents: mapping file blocks to disk blocks through the direct,
/// indirect, double- and triple-indirect addresses (xv6's bmap), reading,
/// writing, truncating, preallocating and punching holes.
///
/// With the `unwritten` feature a leaf address may carry
/// `Layout.unwrittenMark`: a preallocated block that reads as zeroes
/// whatever it holds. Addresses of tables never carry it.
extension Volume {
    private static let direct = UInt64(Layout.directCount)
    private static let perBlock = UInt64(Layout.addressesPerBlock)

    /// What a file block maps to.
    struct Mapping {
        /// 0 for a hole.
        var block: UInt32
        /// Preallocated: reads as zeroes.
        var unwritten = false
        /// Just allocated (or just turned from unwritten to written): the
        /// caller fills the whole block.
        var fresh = false
    }

    /// Where a file block's address lives.
    private enum Slot {
        case direct(Int)
        case entry(table: UInt32, index: Int)
    }

    /// File blocks one entry of a table `depth` levels above the data
    /// covers: 1 for a leaf table's entries. (Constants: every block
    /// mapped on the request path asks.)
    private static let spans: [UInt64] = [1, perBlock, perBlock * perBlock, perBlock * perBlock * perBlock]
    private static func span(_ depth: Int) -> UInt64 { spans[depth] }

    /// The first file block of each tree: 1 indirect, 2 double-, 3 triple-indirect.
    private static let treeBases: [UInt64] = [0, direct, direct + spans[1], direct + spans[1] + spans[2]]
    private static func treeBase(_ level: Int) -> UInt64 { treeBases[level] }

    /// The tree a file block lies in (0 for the direct addresses) and its
    /// index within it; nil past the triple-indirect tree.
    private static func locate(_ n: UInt64) -> (level: Int, index: UInt64)? {
        if n < direct { return (0, n) }
        for level in 1...3 where n < treeBase(level) + span(level) { return (level, n - treeBase(level)) }
        return nil
    }

    private func root(_ inode: Inode, _ level: Int) -> UInt32 {
        switch level {
        case 1: inode.disk.indirect
        case 2: inode.disk.doubleIndirect
        default: inode.disk.tripleIndirect
        }
    }

    private func setRoot(_ inode: Inode, _ level: Int, _ block: UInt32) throws {
        switch level {
        case 1: inode.disk.indirect = block
        case 2: inode.disk.doubleIndirect = block
        default:
            // Its first use marks the image: older versions cannot read it.
            if block != 0 { try useFeature(.bigfile) }
            inode.disk.tripleIndirect = block
        }
    }

    /// A leaf address split into its block and the unwritten mark (a mark
    /// only on images with the `unwritten` feature).
    func decodeAddress(_ raw: UInt32) -> (block: UInt32, unwritten: Bool) {
        guard features.contains(.unwritten), raw & Layout.unwrittenMark != 0 else { return (raw, false) }
        return (raw & ~Layout.unwrittenMark, true)
    }

    /// A fresh zeroed block for an indirect table or file data.
    private func allocateZeroed(_ inode: Inode) throws -> UInt32 {
        let block = try blocks.allocate()
        try cache.withMutableBlock(UInt64(block), fill: .zero) { _ in }
        log.record(UInt64(block))
        inode.disk.blockCount &+= 1
        return block
    }

    /// Reads an address from a table block, checking it points at data.
    private func address(in table: UInt32, at index: Int) throws -> UInt32 {
        let value = try cache.withBlock(UInt64(table)) { $0.u32(4 * index) }
        guard value == 0 || sb.isDataBlock(decodeAddress(value).block) else { throw Errno.EUCLEAN }
        return value
    }

    /// The nonzero entries of a table whose entry i maps file blocks from
    /// `base + i * step`, for those that reach block `first` or beyond,
    /// highest first; each checked to point at data.
    private func liveEntries(in table: UInt32, base: UInt64, step: UInt64,
                             reaching first: UInt64) throws -> [(index: Int, address: UInt32)] {
        try cache.withBlock(UInt64(table)) { bytes in
            var live: [(index: Int, address: UInt32)] = []
            var i = Int(Self.perBlock) - 1
            while i >= 0, base + UInt64(i + 1) * step > first {
                let value = bytes.u32(4 * i)
                if value != 0 {
                    guard sb.isDataBlock(decodeAddress(value).block) else { throw Errno.EUCLEAN }
                    live.append((i, value))
                }
                i -= 1
            }
            return live
        }
    }

    /// Zeroes a table's entries at `indices` in one write.
    private func clearEntries(_ indices: [Int], in table: UInt32) throws {
        guard !indices.isEmpty else { return }
        try cache.withMutableBlock(UInt64(table)) { bytes in
            for i in indices { bytes.set(4 * i, UInt32(0)) }
        }
        log.record(UInt64(table))
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

    /// Where file block `n`'s address lives; nil when a table on the way
    /// is missing (and `allocate` is false). Past the double-indirect tree
    /// only with the data features.
    private func slot(_ inode: Inode, _ n: UInt64, allocate: Bool) throws -> Slot? {
        guard let (level, index) = Self.locate(n), level < 3 || dataFeatures else { throw Errno.EFBIG }
        if level == 0 { return .direct(Int(index)) }
        var table = try self.table(root(inode, level), inode, allocate: allocate) { try setRoot(inode, level, $0) }
        var depth = level - 1
        while table != 0 && depth > 0 {
            let parent = table, i = Int(index / Self.span(depth) % Self.perBlock)
            table = try self.table(try address(in: parent, at: i), inode, allocate: allocate) {
                try setAddress(in: parent, at: i, to: $0)
            }
            depth -= 1
        }
        return table == 0 ? nil : .entry(table: table, index: Int(index % Self.perBlock))
    }

    private func entry(_ inode: Inode, _ slot: Slot) throws -> UInt32 {
        switch slot {
        case .direct(let i):
            let value = inode.disk.direct[i]
            guard value == 0 || sb.isDataBlock(decodeAddress(value).block) else { throw Errno.EUCLEAN }
            return value
        case .entry(let table, let i):
            return try address(in: table, at: i)
        }
    }

    private func setEntry(_ inode: Inode, _ slot: Slot, _ value: UInt32) throws {
        switch slot {
        case .direct(let i): inode.disk.direct[i] = value
        case .entry(let table, let i): try setAddress(in: table, at: i, to: value)
        }
    }

    /// The disk block holding file block `n`. With `allocate`, a hole gets
    /// a block, and an unwritten block becomes written: either way `fresh`,
    /// and the caller fills the whole block in the same transaction.
    func map(_ inode: Inode, _ n: UInt64, allocate: Bool) throws -> Mapping {
        guard let slot = try slot(inode, n, allocate: allocate) else { return Mapping(block: 0) }
        let (block, unwritten) = decodeAddress(try entry(inode, slot))
        if block != 0 {
            guard unwritten && allocate else { return Mapping(block: block, unwritten: unwritten) }
            try setEntry(inode, slot, block)
            return Mapping(block: block, fresh: true)
        }
        guard allocate else { return Mapping(block: 0) }
        let fresh = try blocks.allocate()
        inode.disk.blockCount &+= 1
        try setEntry(inode, slot, fresh)
        return Mapping(block: fresh, fresh: true)
    }

    /// The first file block in `start ..< end` that holds a block (an
    /// unwritten one only when `countUnwritten`); nil if none. Skips what
    /// a missing table would cover, so a sparse 1 TiB file costs little.
    func nextMapped(_ inode: Inode, from start: UInt64, before end: UInt64, countUnwritten: Bool) throws -> UInt64? {
        var n = start
        while n < end {
            guard let (level, index) = Self.locate(n) else { return nil }
            var raw: UInt32
            if level == 0 {
                raw = try entry(inode, .direct(Int(index)))
            } else {
                var table = root(inode, level)
                var depth = level - 1
                while table != 0 && depth > 0 {
                    guard sb.isDataBlock(table) else { throw Errno.EUCLEAN }
                    table = try address(in: table, at: Int(index / Self.span(depth) % Self.perBlock))
                    depth -= 1
                }
                if table == 0 {
                    let covered = Self.span(depth + 1)
                    n += covered - index % covered
                    continue
                }
                guard sb.isDataBlock(table) else { throw Errno.EUCLEAN }
                raw = try address(in: table, at: Int(index % Self.perBlock))
            }
            if raw != 0 && (countUnwritten || !decodeAddress(raw).unwritten) { return n }
            n += 1
        }
        return nil
    }

    /// The first file block in `start ..< end` that reads as zeroes without
    /// a written block (a hole or an unwritten block); nil if none.
    func nextHole(_ inode: Inode, from start: UInt64, before end: UInt64) throws -> UInt64? {
        var n = start
        while n < end {
            let mapping = try map(inode, n, allocate: false)
            if mapping.block == 0 || mapping.unwritten { return n }
            n += 1
        }
        return nil
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
            let mapping = try map(inode, position / bs, allocate: false)
            let block = mapping.block
            if block == 0 || mapping.unwritten {
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
            let mapped: Mapping
            do { mapped = try map(inode, position / bs, allocate: true) } catch {
                // Out of blocks part way: report what was stored, as a short
                // write; the next call gets the error.
                if done > 0 { break }
                throw error
            }
            let (block, fresh) = (mapped.block, mapped.fresh)
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
        // The blocks unmapped go back to the bitmap together at the end,
        // even when a damaged table stops the walk part way.
        var released: [UInt32] = []
        func giveBack() throws {
            for block in released { cache.discard(UInt64(block)) }
            try blocks.free(released)
        }
        let result: (done: Bool, lowestFreed: UInt64)
        do { result = try unmapTail(inode, from: first) { released.append($0) } } catch {
            try? giveBack()
            throw error
        }
        try giveBack()
        return result
    }

    /// Unmaps file blocks from index `first` up, highest first, within one
    /// operation's budget, and hands each block it unmaps (data and
    /// tables) to `unmapped`.
    private func unmapTail(_ inode: Inode, from first: UInt64,
                           unmapped: (UInt32) -> Void) throws -> (done: Bool, lowestFreed: UInt64) {
        var budget = blocksPerOperation
        var lowest = UInt64.max
        func release(_ raw: UInt32) {
            unmapped(decodeAddress(raw).block)
            inode.disk.blockCount = inode.disk.blockCount > 0 ? inode.disk.blockCount - 1 : 0
            budget -= 1
        }
        // Frees the entries of one table that map file blocks >= first,
        // highest first; its entries start at file block `base` and sit
        // `depth` levels above the data (0: a leaf table). Returns false
        // when the budget ran out first. A reclaim passes over the same
        // tables once per operation, so each pass reads a table once and
        // zeroes what it freed in one write, even when it throws.
        func freeEntries(_ table: UInt32, base: UInt64, depth: Int) throws -> Bool {
            let step = Self.span(depth)
            var freed: [Int] = []
            func walk() throws -> Bool {
                for (i, entry) in try liveEntries(in: table, base: base, step: step, reaching: first) {
                    let start = base + UInt64(i) * step
                    if depth > 0 {
                        guard sb.isDataBlock(entry) else { throw Errno.EUCLEAN }
                        guard try freeEntries(entry, base: start, depth: depth - 1) else { return false }
                    }
                    if start >= first {
                        guard budget > 0 else { return false }
                        release(entry)
                        lowest = min(lowest, start)
                        freed.append(i)
                    }
                }
                return true
            }
            let finished: Bool
            do { finished = try walk() } catch { try? clearEntries(freed, in: table); throw error }
            try clearEntries(freed, in: table)
            return finished
        }
        for level in stride(from: 3, through: 1, by: -1) {
            let top = root(inode, level), base = Self.treeBase(level)
            guard top != 0, first < base + Self.span(level) else { continue }
            guard sb.isDataBlock(top) else { throw Errno.EUCLEAN }
            guard try freeEntries(top, base: base, depth: level - 1) else { return (false, lowest) }
            if base >= first {
                guard budget > 0 else { return (false, lowest) }
                release(top)
                try setRoot(inode, level, 0)
            }
        }
        if first < Self.direct {
            var i = Layout.directCount - 1
            while i >= Int(first) {
                let entry = try self.entry(inode, .direct(i))
                if entry != 0 {
                    guard budget > 0 else { return (false, lowest) }
                    release(entry)
                    inode.disk.direct[i] = 0
                    lowest = min(lowest, UInt64(i))
                }
                i -= 1
            }
        }
        return (true, lowest)
    }

    // MARK: Preallocation and holes (fallocate)

    /// Maps file blocks `first ..< stop` as unwritten, within one
    /// operation's budget: a hole gets a block, and with `zeroing` a written
    /// block becomes unwritten (it reads as zeroes from now on). No data
    /// goes through the log. With `growSizeTo`, the size grows over the
    /// blocks done, even if the disk fills part way, so that no block lies
    /// past the size unless the caller asked for it (KEEP_SIZE). Returns the
    /// next block to do: `stop` once done.
    func preallocate(_ inode: Inode, from first: UInt64, to stop: UInt64, zeroing: Bool,
                     growSizeTo end: UInt64?, now: Timespec) throws -> UInt64 {
        var n = first
        defer {
            if let end, n > first || n >= stop {
                let covered = n >= stop ? end : min(end, n * UInt64(Layout.blockSize))
                if covered > inode.disk.size { inode.disk.size = covered; inode.disk.mtime = now }
            }
            inode.disk.ctime = now
            try? inodes.update(inode)
        }
        var budget = blocksPerOperation
        while n < stop && budget > 0 {
            guard let slot = try slot(inode, n, allocate: true) else { throw Errno.EIO }
            let (block, unwritten) = decodeAddress(try entry(inode, slot))
            if block == 0 {
                try useFeature(.unwritten)
                let fresh = try blocks.allocate()
                inode.disk.blockCount &+= 1
                try setEntry(inode, slot, fresh | Layout.unwrittenMark)
                budget -= 1
            } else if zeroing && !unwritten {
                try useFeature(.unwritten)
                try setEntry(inode, slot, block | Layout.unwrittenMark)
                budget -= 1
            }
            n += 1
        }
        return n
    }

    /// Frees the blocks (written or not) among file blocks `first ..< stop`,
    /// within one operation's budget, skipping holes. Tables stay, holding
    /// holes. Returns the next block to look at: `stop` once done.
    func punch(_ inode: Inode, from first: UInt64, to stop: UInt64) throws -> UInt64 {
        var n = first
        for _ in 0..<blocksPerOperation {
            guard let next = try nextMapped(inode, from: n, before: stop, countUnwritten: true),
                  let slot = try slot(inode, next, allocate: false) else { return stop }
            let block = decodeAddress(try entry(inode, slot)).block
            try blocks.free(block)
            cache.discard(UInt64(block))
            inode.disk.blockCount = inode.disk.blockCount > 0 ? inode.disk.blockCount - 1 : 0
            try setEntry(inode, slot, 0)
            n = next + 1
        }
        return n
    }

    /// Zeroes bytes `from ..< to` of one file block, if it holds written data.
    func zeroBytes(_ inode: Inode, from: UInt64, to: UInt64) throws {
        let bs = UInt64(Layout.blockSize)
        guard from < to else { return }
        let mapping = try map(inode, from / bs, allocate: false)
        guard mapping.block != 0 && !mapping.unwritten else { return }
        let lower = Int(from % bs), upper = Int(to - from / bs * bs)
        try cache.withMutableBlock(UInt64(mapping.block)) { data in
            UnsafeMutableRawBufferPointer(rebasing: data[lower..<upper]).initializeMemory(as: UInt8.self, repeating: 0)
        }
        log.record(UInt64(mapping.block))
    }
}
