import BentoKit
import XV6Layout

/// A directory's entries by name, kept in memory once the directory has been
/// read: lookups and inserts cost a hash probe, not a scan.
final class DirectoryIndex {
    struct Slot {
        var ino: UInt32
        /// Byte position of the record in the directory.
        var position: UInt64
    }
    /// A name as a key: hashed as one run of bytes, where `[UInt8]` would
    /// feed the hasher a byte at a time.
    struct Name: Hashable {
        var bytes: [UInt8]
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }
    }
    /// A directory block's free space: the largest record that fits in it,
    /// and where. Free space is a record's unused tail together with the
    /// unused records (ino 0) right after it, which removals leave behind.
    /// Exact after a walk of the block. An insert into that space, or a
    /// removal, leaves it without a walk: another run of free space may be
    /// larger, so the size is then only a lower bound until the block is
    /// walked again.
    struct Room {
        var size: Int
        /// Offset of the record that begins the free space.
        var record: Int
        var exact = true
    }
    var entries: [Name: Slot] = [:]
    /// Per directory block.
    var room: [Room] = []
    /// The block an insert tries first.
    var roomHint = 0
}

/// Directory contents (xv6's dirlookup and dirlink, with variable-length
/// records; see DirectoryRecord).
extension Volume {
    static let dot: [UInt8] = [0x2E]
    static let dotDot: [UInt8] = [0x2E, 0x2E]

    /// The directory's block count, checking its size is whole blocks.
    private func directoryBlocks(_ dir: Inode) throws -> Int {
        let size = dir.disk.size
        guard size % UInt64(Layout.blockSize) == 0, size <= Layout.maxFileSize else { throw Errno.EUCLEAN }
        return Int(size / UInt64(Layout.blockSize))
    }

    /// The disk block of directory block `n`; directories have no holes.
    private func directoryBlock(_ dir: Inode, _ n: Int) throws -> UInt32 {
        let block = try map(dir, UInt64(n), allocate: false).block
        guard block != 0 else { throw Errno.EUCLEAN }
        return block
    }

    /// Walks the records of one directory block, calling `visit` with each
    /// record's offset, parsed header and the block; stops early when
    /// `visit` returns false. Throws EUCLEAN on a malformed record.
    @inline(__always)
    private static func walk(_ data: UnsafeRawBufferPointer,
                             _ visit: (Int, DirectoryRecord.Parsed) throws -> Bool) throws {
        var offset = 0
        while offset < data.count {
            guard let record = DirectoryRecord.parse(data, at: offset) else { throw Errno.EUCLEAN }
            guard try visit(offset, record) else { return }
            offset += record.recordLength
        }
    }

    /// Writes a record for `name` at `offset`, `length` bytes long. Only its
    /// header and name are written: the rest is free space, whose bytes do
    /// not matter (DirectoryRecord.write would clear them one at a time).
    private static func writeRecord(_ data: UnsafeMutableRawBufferPointer, at offset: Int, length: Int,
                                    ino: UInt32, name: [UInt8], type: UInt8) {
        DirectoryRecord.write(data, at: offset, ino: ino, recordLength: DirectoryRecord.length(nameLength: name.count),
                              name: name, type: type)
        data.set(offset + 4, UInt16(length))
    }

    /// The bytes a record's entry takes (none for an empty record).
    @inline(__always)
    private static func used(_ r: DirectoryRecord.Parsed) -> Int {
        r.ino == 0 ? 0 : DirectoryRecord.length(nameLength: r.nameLength)
    }

    /// The bytes a record leaves unused after its entry.
    @inline(__always)
    private static func unused(_ r: DirectoryRecord.Parsed) -> Int { r.recordLength - used(r) }

    /// Largest record that fits in a block, from its records: an unused
    /// record after the first adds to the free space before it (`fold`
    /// makes the two one record).
    private static func room(_ data: UnsafeRawBufferPointer) throws -> DirectoryIndex.Room {
        var best = DirectoryIndex.Room(size: 0, record: 0)
        var run = best
        try walk(data) { offset, r in
            if r.ino == 0 && offset > 0 {
                run.size += r.recordLength
            } else {
                run = .init(size: unused(r), record: offset)
            }
            if run.size > best.size { best = run }
            return true
        }
        return best
    }

    /// Joins each unused record after the first to the record before it:
    /// the free space a removal left becomes part of one record again.
    /// Entries keep their offsets.
    private static func fold(_ data: UnsafeMutableRawBufferPointer) throws {
        var previous = -1
        try walk(UnsafeRawBufferPointer(data)) { offset, r in
            if r.ino == 0 && previous >= 0 {
                data.set(previous + 4, UInt16(Int(data.u16(previous + 4)) + r.recordLength))
            } else {
                previous = offset
            }
            return true
        }
    }

    /// Splits the record at `offset` (parsed as `r`), whose unused tail
    /// must hold the new entry's record; returns the new record's offset.
    private static func place(_ data: UnsafeMutableRawBufferPointer, in r: DirectoryRecord.Parsed, at offset: Int,
                              ino: UInt32, name: [UInt8], type: UInt8) -> Int {
        let used = Self.used(r)
        if r.ino != 0 { data.set(offset + 4, UInt16(used)) }
        writeRecord(data, at: offset + used, length: r.recordLength - used, ino: ino, name: name, type: type)
        return offset + used
    }

    /// The directory's index, built on first use.
    func index(_ dir: Inode) throws -> DirectoryIndex {
        if let index = dir.directory { return index }
        guard dir.isDirectory else { throw Errno.ENOTDIR }
        let index = DirectoryIndex()
        let count = try directoryBlocks(dir)
        index.room.reserveCapacity(count)
        for n in 0..<count {
            let block = try directoryBlock(dir, n)
            try cache.withBlock(UInt64(block)) { data in
                try Self.walk(data) { offset, r in
                    guard r.ino != 0 else { return true }
                    guard r.ino >= Layout.rootInode, r.ino < sb.inodeCount else { throw Errno.EUCLEAN }
                    let name = Array(data[(offset + DirectoryRecord.headerSize)..<(offset + DirectoryRecord.headerSize + r.nameLength)])
                    index.entries[.init(name)] = .init(ino: r.ino, position: UInt64(n) * UInt64(Layout.blockSize) + UInt64(offset))
                    return true
                }
                index.room.append(try Self.room(data))
            }
        }
        guard index.entries[.init(Self.dot)] != nil, index.entries[.init(Self.dotDot)] != nil else { throw Errno.EUCLEAN }
        dir.directory = index
        return index
    }

    func lookup(_ dir: Inode, _ name: [UInt8]) throws -> UInt32? {
        try index(dir).entries[.init(name)]?.ino
    }

    /// Adds an entry; the name must not exist yet. Grows the directory by a
    /// block when no block has room.
    func addEntry(_ dir: Inode, _ name: [UInt8], ino: UInt32, mode: UInt32) throws {
        let index = try index(dir)
        let needed = DirectoryRecord.length(nameLength: name.count)
        var n = index.roomHint < index.room.count && index.room[index.roomHint].size >= needed ? index.roomHint : -1
        if n < 0, let found = index.room.firstIndex(where: { $0.size >= needed }) { n = found }
        // Before the directory grows, the blocks whose room is a lower
        // bound get walked: a removal may have left more.
        for i in index.room.indices where n < 0 && !index.room[i].exact {
            index.room[i] = try cache.withBlock(UInt64(try directoryBlock(dir, i))) { try Self.room($0) }
            if index.room[i].size >= needed { n = i }
        }
        if n < 0 {
            n = index.room.count
            let block = try map(dir, UInt64(n), allocate: true).block
            try cache.withMutableBlock(UInt64(block), fill: .zero) { DirectoryRecord.initializeEmpty($0) }
            log.record(UInt64(block))
            dir.disk.size += UInt64(Layout.blockSize)
            index.room.append(.init(size: Layout.blockSize, record: 0))
        }
        let block = try directoryBlock(dir, n)
        let type = DirectoryRecord.typeByte(mode: mode)
        let known = index.room[n]
        let (offset, room) = try cache.withMutableBlock(UInt64(block)) { data -> (Int, DirectoryIndex.Room) in
            // The record the index names as the block's room, if it still
            // is: no walk of the block (a full one holds a hundred records).
            if let r = DirectoryRecord.parse(UnsafeRawBufferPointer(data), at: known.record),
               Self.unused(r) == known.size, known.size >= needed {
                let placed = Self.place(data, in: r, at: known.record, ino: ino, name: name, type: type)
                return (placed, .init(size: known.size - needed, record: placed, exact: false))
            }
            // Else the free space left by removals is folded first; then one
            // pass: the entry goes into the first record with room for it,
            // and the block's room afterwards is the largest.
            try Self.fold(data)
            var placed = -1
            var room = DirectoryIndex.Room(size: 0, record: 0)
            try Self.walk(UnsafeRawBufferPointer(data)) { offset, r in
                var free = Self.unused(r)
                var at = offset
                if placed < 0 && free >= needed {
                    placed = Self.place(data, in: r, at: offset, ino: ino, name: name, type: type)
                    free -= needed
                    at = placed
                }
                if free > room.size { room = .init(size: free, record: at) }
                return true
            }
            guard placed >= 0 else { throw Errno.EUCLEAN }  // the room table was wrong
            return (placed, room)
        }
        log.record(UInt64(block))
        index.room[n] = room
        index.roomHint = n
        index.entries[.init(name)] = .init(ino: ino, position: UInt64(n) * UInt64(Layout.blockSize) + UInt64(offset))
    }

    /// Removes an entry without a walk of its block: its record becomes
    /// unused (ino 0). The next insert that walks the block folds it into
    /// the record before it (`fold`).
    func removeEntry(_ dir: Inode, _ name: [UInt8]) throws {
        let index = try index(dir)
        guard let slot = index.entries[.init(name)] else { throw Errno.ENOENT }
        let n = Int(slot.position / UInt64(Layout.blockSize))
        let target = Int(slot.position % UInt64(Layout.blockSize))
        let block = try directoryBlock(dir, n)
        let freed = try cache.withMutableBlock(UInt64(block)) { data -> Int in
            guard let r = DirectoryRecord.parse(UnsafeRawBufferPointer(data), at: target), r.ino == slot.ino else {
                throw Errno.EUCLEAN
            }
            data.set(target, UInt32(0))
            return r.recordLength
        }
        log.record(UInt64(block))
        // The record before it may add more free space: a lower bound.
        if freed >= index.room[n].size { index.room[n] = .init(size: freed, record: target) }
        index.room[n].exact = false
        if freed >= DirectoryRecord.length(nameLength: Layout.maxNameLength) { index.roomHint = n }
        index.entries[.init(name)] = nil
    }

    /// Points an existing entry at another inode (rename over a name, "..").
    func replaceEntry(_ dir: Inode, _ name: [UInt8], ino: UInt32, mode: UInt32) throws {
        let index = try index(dir)
        guard let slot = index.entries[.init(name)] else { throw Errno.ENOENT }
        let block = try directoryBlock(dir, Int(slot.position / UInt64(Layout.blockSize)))
        let offset = Int(slot.position % UInt64(Layout.blockSize))
        try cache.withMutableBlock(UInt64(block)) { data in
            data.set(offset, ino)
            data[offset + 7] = DirectoryRecord.typeByte(mode: mode)
        }
        log.record(UInt64(block))
        index.entries[.init(name)] = .init(ino: ino, position: slot.position)
    }

    /// A new directory's first block: "." and "..".
    func initializeDirectory(_ dir: Inode, parent: UInt32) throws {
        let block = try map(dir, 0, allocate: true).block
        let type = DirectoryRecord.typeByte(mode: FileMode.directory)
        try cache.withMutableBlock(UInt64(block), fill: .zero) { data in
            DirectoryRecord.initializeEmpty(data)
            DirectoryRecord.write(data, at: 0, ino: dir.ino, recordLength: 12, name: Self.dot, type: type)
            Self.writeRecord(data, at: 12, length: Layout.blockSize - 12, ino: parent, name: Self.dotDot, type: type)
        }
        log.record(UInt64(block))
        dir.disk.size = UInt64(Layout.blockSize)
        let index = DirectoryIndex()
        index.entries[.init(Self.dot)] = .init(ino: dir.ino, position: 0)
        index.entries[.init(Self.dotDot)] = .init(ino: parent, position: 12)
        index.room = [try cache.withBlock(UInt64(block)) { try Self.room($0) }]
        dir.directory = index
    }

    func isEmptyDirectory(_ dir: Inode) throws -> Bool {
        try index(dir).entries.count <= 2
    }

    /// Entries at byte positions >= `from`, in directory order, until
    /// `visit` returns false. Skips names it cannot parse as corrupt.
    func forEachEntry(_ dir: Inode, from: UInt64,
                      _ visit: (_ position: UInt64, _ ino: UInt32, _ type: UInt8, _ name: [UInt8]) throws -> Bool) throws {
        let count = try directoryBlocks(dir)
        var n = Int(from / UInt64(Layout.blockSize))
        while n < count {
            let block = try directoryBlock(dir, n)
            var more = true
            try cache.withBlock(UInt64(block)) { data in
                try Self.walk(data) { offset, r in
                    let position = UInt64(n) * UInt64(Layout.blockSize) + UInt64(offset)
                    guard r.ino != 0, position >= from else { return true }
                    let start = offset + DirectoryRecord.headerSize
                    more = try visit(position, r.ino, r.type, Array(data[start..<start + r.nameLength]))
                    return more
                }
            }
            guard more else { return }
            n += 1
        }
    }
}
