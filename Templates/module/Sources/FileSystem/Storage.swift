import BentoKit
import Glibc

/// The layers under the file operations: blocks (write-through), the
/// allocator, inodes and their block maps, directories. Every call runs
/// under `Volume`'s one lock, so nothing here locks on its own.
final class Storage {
    let cache: any BufferCache
    let geometry: Geometry
    /// Free counts and where the allocators look first: kept in memory,
    /// handed to the next version in the upgrade state.
    var freeBlocks: UInt64
    var freeInodes: UInt64
    var blockHint: UInt64
    var inodeHint: UInt64
    /// Blocks changed by the operation running now: written to the device
    /// when it ends (`writeThrough`).
    private var changed: [UInt64] = []

    init(cache: any BufferCache, geometry: Geometry, freeBlocks: UInt64, freeInodes: UInt64,
         blockHint: UInt64, inodeHint: UInt64) {
        self.cache = cache; self.geometry = geometry
        self.freeBlocks = freeBlocks; self.freeInodes = freeInodes
        self.blockHint = blockHint; self.inodeHint = inodeHint
    }

    // MARK: Blocks

    func read<R>(_ block: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try cache.withBlock(block, body)
    }

    /// Changes a block in the cache; it reaches the device when the
    /// operation ends.
    @discardableResult
    func modify<R>(_ block: UInt64, fill: BlockFill = .read,
                   _ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
        if changed.last != block && !changed.contains(block) { changed.append(block) }
        return try cache.withMutableBlock(block, fill: fill, body)
    }

    /// Write-through: each operation's blocks go to the device as it ends,
    /// so the cache holds no change of a finished operation alone (a crash
    /// of the daemon loses nothing answered; fsync adds the device flush).
    /// Not atomic: a power cut in the middle of an operation can leave part
    /// of it on disk (README.md, "Limits").
    func writeThrough() throws {
        defer { changed.removeAll(keepingCapacity: true) }
        for block in changed { try cache.writeBack(block) }
    }

    // MARK: The block allocator

    func allocateBlock() throws -> UInt64 {
        guard freeBlocks > 0 else { throw Errno.ENOSPC }
        let bitsPerBlock = UInt64(Layout.blockSize * 8)
        let span = geometry.blockCount - geometry.dataStart
        for step in 0..<span {
            let block = geometry.dataStart + (blockHint - geometry.dataStart + step) % span
            let (map, bit) = (geometry.bitmapStart + block / bitsPerBlock, Int(block % bitsPerBlock))
            let used = try read(map) { $0[bit / 8] & (1 << (bit % 8)) != 0 }
            if used { continue }
            try modify(map) { $0[bit / 8] |= 1 << (bit % 8) }
            try modify(block, fill: .zero) { $0.initializeMemory(as: UInt8.self, repeating: 0) }
            freeBlocks -= 1
            blockHint = block + 1 < geometry.blockCount ? block + 1 : geometry.dataStart
            return block
        }
        throw Errno.ENOSPC
    }

    func freeBlock(_ block: UInt64) throws {
        guard block >= geometry.dataStart && block < geometry.blockCount else { throw Errno.EUCLEAN }
        let bitsPerBlock = UInt64(Layout.blockSize * 8)
        let (map, bit) = (geometry.bitmapStart + block / bitsPerBlock, Int(block % bitsPerBlock))
        try modify(map) { $0[bit / 8] &= ~(1 << (bit % 8)) }
        freeBlocks += 1
    }

    // MARK: Inodes

    func inode(_ ino: InodeNumber) throws -> Inode {
        guard ino >= 1 && ino < geometry.inodeCount else { throw Errno.ENOENT }
        let (block, offset) = geometry.place(of: ino)
        return try read(block) { Inode(UnsafeRawBufferPointer(rebasing: $0[offset..<offset + Layout.inodeSize])) }
    }

    /// An inode in use: ENOENT for a free one (a stale number).
    func usedInode(_ ino: InodeNumber) throws -> Inode {
        let inode = try inode(ino)
        guard inode.mode != 0 else { throw Errno.ENOENT }
        return inode
    }

    func save(_ ino: InodeNumber, _ inode: Inode) throws {
        let (block, offset) = geometry.place(of: ino)
        try modify(block) { inode.encode(into: UnsafeMutableRawBufferPointer(rebasing: $0[offset..<offset + Layout.inodeSize])) }
    }

    func allocateInode(mode: UInt32, ctx: RequestContext, now: Timespec) throws -> (InodeNumber, Inode) {
        guard freeInodes > 0 else { throw Errno.ENOSPC }
        for step in 0..<geometry.inodeCount - 2 {
            let ino = 2 + (inodeHint - 2 + step) % (geometry.inodeCount - 2)
            var inode = try inode(ino)
            if inode.mode != 0 { continue }
            let generation = inode.generation &+ 1
            inode = Inode()
            inode.mode = mode; inode.uid = ctx.uid; inode.gid = ctx.gid
            inode.atime = now; inode.mtime = now; inode.ctime = now
            inode.generation = generation
            try save(ino, inode)
            freeInodes -= 1
            inodeHint = ino + 1 < geometry.inodeCount ? ino + 1 : 2
            return (ino, inode)
        }
        throw Errno.ENOSPC
    }

    /// Frees an inode and its blocks.
    func freeInode(_ ino: InodeNumber, _ inode: inout Inode) throws {
        try truncate(&inode, to: 0)
        inode.mode = 0
        inode.nlink = 0
        try save(ino, inode)
        freeInodes += 1
    }

    // MARK: Block maps

    /// The device block holding block `index` of the file; 0 for a hole,
    /// or with `allocate`, a fresh zeroed block put there.
    func map(_ inode: inout Inode, _ index: UInt64, allocate: Bool) throws -> UInt64 {
        let perBlock = UInt64(Layout.pointersPerBlock)
        var index = index
        if index < UInt64(Layout.directCount) {
            return try slot(&inode.blocks[Int(index)], allocate: allocate)
        }
        index -= UInt64(Layout.directCount)
        if index < perBlock {
            let indirect = try slot(&inode.blocks[Layout.directCount], allocate: allocate)
            return indirect == 0 ? 0 : try pointer(in: indirect, at: Int(index), allocate: allocate)
        }
        index -= perBlock
        guard index < perBlock * perBlock else { throw Errno.EFBIG }
        let double = try slot(&inode.blocks[Layout.directCount + 1], allocate: allocate)
        guard double != 0 else { return 0 }
        let indirect = try pointer(in: double, at: Int(index / perBlock), allocate: allocate)
        return indirect == 0 ? 0 : try pointer(in: indirect, at: Int(index % perBlock), allocate: allocate)
    }

    private func slot(_ pointer: inout UInt32, allocate: Bool) throws -> UInt64 {
        if pointer == 0 && allocate { pointer = UInt32(try allocateBlock()) }
        return UInt64(pointer)
    }

    private func pointer(in block: UInt64, at index: Int, allocate: Bool) throws -> UInt64 {
        let found = try read(block) { $0.u32(index * 4) }
        if found != 0 || !allocate { return UInt64(found) }
        let fresh = try allocateBlock()
        try modify(block) { $0.put(UInt32(fresh), at: index * 4) }
        return fresh
    }

    /// Sets the size, freeing the blocks past it and zeroing the rest of
    /// the last block (a later extension must read zeroes there).
    func truncate(_ inode: inout Inode, to size: UInt64) throws {
        let blockSize = UInt64(Layout.blockSize)
        if size < inode.size {
            let keep = (size + blockSize - 1) / blockSize
            let had = min((inode.size + blockSize - 1) / blockSize, Layout.maxFileBlocks)
            for index in keep..<max(keep, had) { try unmap(&inode, index) }
            try freeEmptyPointerBlocks(&inode, keeping: keep)
            if size % blockSize != 0 {
                let block = try map(&inode, size / blockSize, allocate: false)
                if block != 0 {
                    try modify(block) { b in
                        let from = Int(size % blockSize)
                        UnsafeMutableRawBufferPointer(rebasing: b[from...]).initializeMemory(as: UInt8.self, repeating: 0)
                    }
                }
            }
        }
        inode.size = size
    }

    private func unmap(_ inode: inout Inode, _ index: UInt64) throws {
        let perBlock = UInt64(Layout.pointersPerBlock)
        if index < UInt64(Layout.directCount) {
            if inode.blocks[Int(index)] != 0 { try freeBlock(UInt64(inode.blocks[Int(index)])) }
            inode.blocks[Int(index)] = 0
            return
        }
        var rest = index - UInt64(Layout.directCount)
        var holder = UInt64(inode.blocks[Layout.directCount])
        if rest >= perBlock {
            rest -= perBlock
            let double = UInt64(inode.blocks[Layout.directCount + 1])
            guard double != 0 else { return }
            holder = try read(double) { UInt64($0.u32(Int(rest / perBlock) * 4)) }
            rest %= perBlock
        }
        guard holder != 0 else { return }
        let block = try read(holder) { $0.u32(Int(rest) * 4) }
        if block != 0 {
            try freeBlock(UInt64(block))
            try modify(holder) { $0.put(UInt32(0), at: Int(rest) * 4) }
        }
    }

    /// After a truncate to `keep` blocks: frees indirect blocks that map
    /// nothing any more.
    private func freeEmptyPointerBlocks(_ inode: inout Inode, keeping keep: UInt64) throws {
        let perBlock = UInt64(Layout.pointersPerBlock)
        let direct = UInt64(Layout.directCount)
        if keep <= direct, inode.blocks[Layout.directCount] != 0 {
            try freeBlock(UInt64(inode.blocks[Layout.directCount]))
            inode.blocks[Layout.directCount] = 0
        }
        let double = UInt64(inode.blocks[Layout.directCount + 1])
        guard double != 0 else { return }
        // Indirect blocks of the double indirect one wholly past `keep`.
        let firstDoubleIndex = direct + perBlock
        let keptInDouble = keep > firstDoubleIndex ? keep - firstDoubleIndex : 0
        let firstFree = Int((keptInDouble + perBlock - 1) / perBlock)
        for i in firstFree..<Int(perBlock) {
            let indirect = try read(double) { $0.u32(i * 4) }
            if indirect != 0 {
                try freeBlock(UInt64(indirect))
                try modify(double) { $0.put(UInt32(0), at: i * 4) }
            }
        }
        if firstFree == 0 {
            try freeBlock(double)
            inode.blocks[Layout.directCount + 1] = 0
        }
    }

    // MARK: File contents

    func readData(_ inode: inout Inode, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset < inode.size else { return 0 }
        let count = Int(min(UInt64(buffer.count), inode.size - offset))
        let blockSize = UInt64(Layout.blockSize)
        var done = 0
        while done < count {
            let at = offset + UInt64(done)
            let within = Int(at % blockSize)
            let n = min(count - done, Layout.blockSize - within)
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + n])
            let block = try map(&inode, at / blockSize, allocate: false)
            if block == 0 {
                target.initializeMemory(as: UInt8.self, repeating: 0)   // a hole
            } else {
                try read(block) { target.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[within..<within + n])) }
            }
            done += n
        }
        return count
    }

    /// Writes what fits; ENOSPC only when nothing did. The size grows over
    /// stored bytes only.
    func writeData(_ inode: inout Inode, at offset: UInt64, from data: UnsafeRawBufferPointer) throws -> Int {
        let blockSize = UInt64(Layout.blockSize)
        guard offset + UInt64(data.count) <= Layout.maxFileBlocks * blockSize else { throw Errno.EFBIG }
        var done = 0
        while done < data.count {
            let at = offset + UInt64(done)
            let within = Int(at % blockSize)
            let n = min(data.count - done, Layout.blockSize - within)
            let block: UInt64
            do { block = try map(&inode, at / blockSize, allocate: true) } catch let error as Errno where error == .ENOSPC && done > 0 { break }
            try modify(block, fill: n == Layout.blockSize ? .zero : .read) {
                UnsafeMutableRawBufferPointer(rebasing: $0[within..<within + n])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: data[done..<done + n]))
            }
            done += n
            inode.size = max(inode.size, at + UInt64(n))
        }
        return done
    }

    // MARK: Directories

    /// Every record slot of a directory, in order, until `body` returns false.
    func forEachRecord(_ dir: inout Inode, _ body: (Int, DirectoryRecord) throws -> Bool) throws {
        let slots = Int(dir.size) / Layout.recordSize
        var slot = 0
        while slot < slots {
            let block = try map(&dir, UInt64(slot / Layout.recordsPerBlock), allocate: false)
            let records = try read(block) { b in
                (0..<Layout.recordsPerBlock).map { i in
                    DirectoryRecord(UnsafeRawBufferPointer(rebasing: b[i * Layout.recordSize..<(i + 1) * Layout.recordSize]))
                }
            }
            for record in records {
                if record.ino != 0, try !body(slot, record) { return }
                slot += 1
            }
        }
    }

    func find(_ dir: inout Inode, _ name: FileName) throws -> (slot: Int, record: DirectoryRecord)? {
        var found: (Int, DirectoryRecord)?
        try forEachRecord(&dir) { slot, record in
            if record.name == name.bytes { found = (slot, record) }
            return found == nil
        }
        return found
    }

    func isEmptyDirectory(_ dir: inout Inode) throws -> Bool {
        var empty = true
        try forEachRecord(&dir) { _, _ in empty = false; return false }
        return empty
    }

    /// Puts a record in the first free slot, growing the directory by a
    /// block when none is free.
    func addRecord(_ dir: inout Inode, _ record: DirectoryRecord) throws {
        let slots = Int(dir.size) / Layout.recordSize
        var free = slots
        for slot in 0..<slots {
            let block = try map(&dir, UInt64(slot / Layout.recordsPerBlock), allocate: false)
            let offset = (slot % Layout.recordsPerBlock) * Layout.recordSize
            if try read(block, { $0.u32(offset) }) == 0 { free = slot; break }
        }
        let block = try map(&dir, UInt64(free / Layout.recordsPerBlock), allocate: true)
        let offset = (free % Layout.recordsPerBlock) * Layout.recordSize
        try modify(block) { b in
            let target = UnsafeMutableRawBufferPointer(rebasing: b[offset..<offset + Layout.recordSize])
            target.initializeMemory(as: UInt8.self, repeating: 0)
            record.encode(into: target)
        }
        if free == slots { dir.size += UInt64(Layout.blockSize) }
    }

    func removeRecord(_ dir: inout Inode, slot: Int) throws {
        let block = try map(&dir, UInt64(slot / Layout.recordsPerBlock), allocate: false)
        try modify(block) { $0.put(UInt32(0), at: (slot % Layout.recordsPerBlock) * Layout.recordSize) }
    }

    /// Points an existing record at another inode (rename over a name).
    func replaceRecord(_ dir: inout Inode, slot: Int, with record: DirectoryRecord) throws {
        let block = try map(&dir, UInt64(slot / Layout.recordsPerBlock), allocate: false)
        let offset = (slot % Layout.recordsPerBlock) * Layout.recordSize
        try modify(block) { record.encode(into: UnsafeMutableRawBufferPointer(rebasing: $0[offset..<offset + Layout.recordSize])) }
    }

    // MARK: Mount

    /// Formats an all-zero device: superblock, bitmap, empty inode table,
    /// the root directory.
    static func format(_ cache: any BufferCache, blockCount: UInt64, now: Timespec) throws -> Geometry {
        let geometry = Geometry(blockCount: blockCount, volumeID: UInt64.random(in: 1...UInt64.max))
        guard geometry.dataStart + 16 < geometry.blockCount else { throw Errno.ENOSPC }
        let storage = Storage(cache: cache, geometry: geometry, freeBlocks: 0, freeInodes: 0,
                              blockHint: geometry.dataStart, inodeHint: 2)
        for block in 1..<geometry.dataStart {
            try storage.modify(block, fill: .zero) { $0.initializeMemory(as: UInt8.self, repeating: 0) }
        }
        // The metadata blocks are in use in the bitmap.
        let bitsPerBlock = UInt64(Layout.blockSize * 8)
        for block in 0..<geometry.dataStart {
            let bit = Int(block % bitsPerBlock)
            try storage.modify(geometry.bitmapStart + block / bitsPerBlock) { $0[bit / 8] |= 1 << (bit % 8) }
        }
        var root = Inode()
        root.mode = FileMode.directory | 0o755
        root.nlink = 2
        root.parent = UInt32(Layout.rootInode)
        root.atime = now; root.mtime = now; root.ctime = now
        try storage.save(Layout.rootInode, root)
        try storage.writeThrough()
        // The superblock last: a device cut off before this formats again.
        try cache.withMutableBlock(0, fill: .zero) { b in
            b.initializeMemory(as: UInt8.self, repeating: 0)
            geometry.encode(into: b)
        }
        try cache.writeBack(0)
        try cache.device.flush()
        return geometry
    }

    /// Counts free blocks and inodes (a fresh mount: nothing to trust but
    /// the disk).
    func countFree() throws {
        var used: UInt64 = 0
        for map in geometry.bitmapStart..<geometry.inodeStart {
            used += try read(map) { b in b.reduce(0) { $0 + UInt64($1.nonzeroBitCount) } }
        }
        freeBlocks = geometry.blockCount - min(used, geometry.blockCount)
        var usedInodes: UInt64 = 0
        for ino in 1..<geometry.inodeCount where try inode(ino).mode != 0 { usedInodes += 1 }
        freeInodes = geometry.inodeCount - 1 - usedInodes
    }
}

func currentTime() -> Timespec {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Timespec(seconds: Int64(ts.tv_sec), nanoseconds: UInt32(ts.tv_nsec))
}
