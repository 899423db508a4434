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
    var entries: [[UInt8]: Slot] = [:]
    /// Per directory block: the largest record that would fit in it now.
    var room: [Int] = []
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
    private static func walk(_ data: UnsafeRawBufferPointer,
                             _ visit: (Int, DirectoryRecord.Parsed) throws -> Bool) throws {
        var offset = 0
        while offset < data.count {
            guard let record = DirectoryRecord.parse(data, at: offset) else { throw Errno.EUCLEAN }
            guard try visit(offset, record) else { return }
            offset += record.recordLength
        }
    }

    /// Largest record that fits in a block, from its records.
    private static func room(_ data: UnsafeRawBufferPointer) throws -> Int {
        var best = 0
        try walk(data) { _, r in
            let used = r.ino == 0 ? 0 : DirectoryRecord.length(nameLength: r.nameLength)
            best = max(best, r.recordLength - used)
            return true
        }
        return best
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
                    index.entries[name] = .init(ino: r.ino, position: UInt64(n) * UInt64(Layout.blockSize) + UInt64(offset))
                    return true
                }
                index.room.append(try Self.room(data))
            }
        }
        guard index.entries[Self.dot] != nil, index.entries[Self.dotDot] != nil else { throw Errno.EUCLEAN }
        dir.directory = index
        return index
    }

    func lookup(_ dir: Inode, _ name: [UInt8]) throws -> UInt32? {
        try index(dir).entries[name]?.ino
    }

    /// Adds an entry; the name must not exist yet. Grows the directory by a
    /// block when no block has room.
    func addEntry(_ dir: Inode, _ name: [UInt8], ino: UInt32, mode: UInt32) throws {
        let index = try index(dir)
        let needed = DirectoryRecord.length(nameLength: name.count)
        var n = index.roomHint < index.room.count && index.room[index.roomHint] >= needed ? index.roomHint : -1
        if n < 0, let found = index.room.firstIndex(where: { $0 >= needed }) { n = found }
        if n < 0 {
            n = index.room.count
            let (block, _) = try map(dir, UInt64(n), allocate: true)
            try cache.withMutableBlock(UInt64(block), fill: .zero) { DirectoryRecord.initializeEmpty($0) }
            log.record(UInt64(block))
            dir.disk.size += UInt64(Layout.blockSize)
            index.room.append(Layout.blockSize)
        }
        let block = try directoryBlock(dir, n)
        let type = DirectoryRecord.typeByte(mode: mode)
        let (offset, room) = try cache.withMutableBlock(UInt64(block)) { data -> (Int, Int) in
            var placed = -1
            try Self.walk(UnsafeRawBufferPointer(data)) { offset, r in
                let used = r.ino == 0 ? 0 : DirectoryRecord.length(nameLength: r.nameLength)
                guard r.recordLength - used >= needed else { return true }
                if r.ino == 0 {
                    DirectoryRecord.write(data, at: offset, ino: ino, recordLength: r.recordLength, name: name, type: type)
                    placed = offset
                } else {
                    data.set(offset + 4, UInt16(used))
                    DirectoryRecord.write(data, at: offset + used, ino: ino, recordLength: r.recordLength - used,
                                          name: name, type: type)
                    placed = offset + used
                }
                return false
            }
            guard placed >= 0 else { throw Errno.EUCLEAN }  // the room table was wrong
            return (placed, try Self.room(UnsafeRawBufferPointer(data)))
        }
        log.record(UInt64(block))
        index.room[n] = room
        index.roomHint = n
        index.entries[name] = .init(ino: ino, position: UInt64(n) * UInt64(Layout.blockSize) + UInt64(offset))
    }

    /// Removes an entry: its space joins the record before it.
    func removeEntry(_ dir: Inode, _ name: [UInt8]) throws {
        let index = try index(dir)
        guard let slot = index.entries[name] else { throw Errno.ENOENT }
        let n = Int(slot.position / UInt64(Layout.blockSize))
        let target = Int(slot.position % UInt64(Layout.blockSize))
        let block = try directoryBlock(dir, n)
        let room = try cache.withMutableBlock(UInt64(block)) { data -> Int in
            var previous = -1
            var found = false
            try Self.walk(UnsafeRawBufferPointer(data)) { offset, r in
                guard offset == target else { previous = offset; return offset < target }
                if previous >= 0 {
                    data.set(previous + 4, UInt16(Int(data.u16(previous + 4)) + r.recordLength))
                } else {
                    data.set(offset, UInt32(0))
                }
                found = true
                return false
            }
            guard found else { throw Errno.EUCLEAN }
            return try Self.room(UnsafeRawBufferPointer(data))
        }
        log.record(UInt64(block))
        index.room[n] = room
        if room >= DirectoryRecord.length(nameLength: Layout.maxNameLength) { index.roomHint = n }
        index.entries[name] = nil
    }

    /// Points an existing entry at another inode (rename over a name, "..").
    func replaceEntry(_ dir: Inode, _ name: [UInt8], ino: UInt32, mode: UInt32) throws {
        let index = try index(dir)
        guard let slot = index.entries[name] else { throw Errno.ENOENT }
        let block = try directoryBlock(dir, Int(slot.position / UInt64(Layout.blockSize)))
        let offset = Int(slot.position % UInt64(Layout.blockSize))
        try cache.withMutableBlock(UInt64(block)) { data in
            data.set(offset, ino)
            data[offset + 7] = DirectoryRecord.typeByte(mode: mode)
        }
        log.record(UInt64(block))
        index.entries[name] = .init(ino: ino, position: slot.position)
    }

    /// A new directory's first block: "." and "..".
    func initializeDirectory(_ dir: Inode, parent: UInt32) throws {
        let (block, _) = try map(dir, 0, allocate: true)
        let type = DirectoryRecord.typeByte(mode: FileMode.directory)
        try cache.withMutableBlock(UInt64(block), fill: .zero) { data in
            DirectoryRecord.initializeEmpty(data)
            DirectoryRecord.write(data, at: 0, ino: dir.ino, recordLength: 12, name: Self.dot, type: type)
            DirectoryRecord.write(data, at: 12, ino: parent, recordLength: Layout.blockSize - 12, name: Self.dotDot, type: type)
        }
        log.record(UInt64(block))
        dir.disk.size = UInt64(Layout.blockSize)
        let index = DirectoryIndex()
        index.entries[Self.dot] = .init(ino: dir.ino, position: 0)
        index.entries[Self.dotDot] = .init(ino: parent, position: 12)
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
