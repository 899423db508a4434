import BentoKit
import XV6Layout

/// An inode in memory: its on-disk fields plus what only lives in memory.
final class Inode {
    let ino: UInt32
    var disk: DiskInode
    /// A directory's name index, built on first use.
    var directory: DirectoryIndex?

    init(ino: UInt32, disk: DiskInode) {
        self.ino = ino
        self.disk = disk
    }

    var isDirectory: Bool { disk.isDirectory }
    /// Still referenced although no directory names it any more.
    var isOrphan: Bool { disk.nlink == 0 }
}

/// The inode table on disk and the inode cache in front of it.
final class InodeTable {
    let cache: any BufferCache
    let sb: Superblock
    let log: WriteAheadLog
    private var inodes = IntegerMap<Inode>()
    /// Where the next search for a free inode starts.
    var hint: UInt32 = Layout.rootInode + 1
    var freeCount: UInt64 = 0

    init(cache: any BufferCache, superblock: Superblock, log: WriteAheadLog) {
        self.cache = cache
        self.sb = superblock
        self.log = log
    }

    var cachedCount: Int { inodes.count }

    /// The inode `ino`, read through the cache. Numbers outside the table are
    /// corruption (the kernel only knows numbers we handed out); a free inode
    /// is ENOENT.
    func get(_ ino: UInt32) throws -> Inode {
        if let inode = inodes[UInt64(ino)] { return inode }
        guard ino >= Layout.rootInode, ino < sb.inodeCount else { throw Errno.EUCLEAN }
        let (block, offset) = sb.inodeLocation(ino)
        let disk = try cache.withBlock(block) { data in
            try DiskInode.decode(ino: ino, UnsafeRawBufferPointer(rebasing: data[offset..<offset + Layout.inodeSize]))
        }
        guard !disk.isFree else { throw Errno.ENOENT }
        let inode = Inode(ino: ino, disk: disk)
        inodes[UInt64(ino)] = inode
        return inode
    }

    /// Writes the inode's fields to its slot and records the block.
    func update(_ inode: Inode) throws {
        let (block, offset) = sb.inodeLocation(inode.ino)
        try cache.withMutableBlock(block) { data in
            inode.disk.encode(ino: inode.ino, into: UnsafeMutableRawBufferPointer(rebasing: data[offset..<offset + Layout.inodeSize]))
        }
        log.record(block)
    }

    /// Allocates a free inode with `mode`, owned by `ctx`, and writes it.
    func allocate(mode: UInt32, ctx: RequestContext, now: Timespec) throws -> Inode {
        guard freeCount > 0 else { throw Errno.ENOSPC }
        let count = sb.inodeCount
        var ino = hint > Layout.rootInode && hint < count ? hint : Layout.rootInode + 1
        for _ in 0..<count {
            if inodes[UInt64(ino)] == nil {
                let (block, offset) = sb.inodeLocation(ino)
                let slot = try cache.withBlock(block) { data -> DiskInode? in
                    let bytes = UnsafeRawBufferPointer(rebasing: data[offset..<offset + Layout.inodeSize])
                    guard bytes.u32(0) == 0 else { return nil }
                    return try DiskInode.decode(ino: ino, bytes)
                }
                if var disk = slot {
                    disk.mode = mode
                    disk.nlink = 1
                    disk.uid = ctx.uid
                    disk.gid = ctx.gid
                    disk.generation &+= 1
                    disk.atime = now; disk.mtime = now; disk.ctime = now
                    let inode = Inode(ino: ino, disk: disk)
                    inodes[UInt64(ino)] = inode
                    try update(inode)
                    freeCount -= 1
                    hint = ino + 1
                    return inode
                }
            }
            ino = ino + 1 < count ? ino + 1 : Layout.rootInode + 1
        }
        freeCount = 0
        throw Errno.ENOSPC
    }

    /// Marks the inode's slot free (its blocks must be freed already).
    func free(_ inode: Inode) throws {
        let (block, offset) = sb.inodeLocation(inode.ino)
        try cache.withMutableBlock(block) { data in
            DiskInode.encodeFree(generation: inode.disk.generation,
                                 into: UnsafeMutableRawBufferPointer(rebasing: data[offset..<offset + Layout.inodeSize]))
        }
        log.record(block)
        inodes[UInt64(inode.ino)] = nil
        freeCount += 1
        if inode.ino < hint { hint = inode.ino }
    }

    /// Drops an unreferenced inode from the cache (it is on disk already).
    func evict(_ inode: Inode) {
        if inodes[UInt64(inode.ino)] === inode { inodes[UInt64(inode.ino)] = nil }
    }

    /// Scans the whole table at mount: counts free inodes and returns those
    /// allocated with no links (orphans a crash left behind).
    func scan() throws -> [UInt32] {
        var free: UInt64 = 0
        var orphans: [UInt32] = []
        for b in 0..<UInt64(sb.inodeBlocks) {
            try cache.withBlock(UInt64(sb.inodeStart) + b) { data in
                for slot in 0..<Layout.inodesPerBlock {
                    let ino = UInt32(b) * UInt32(Layout.inodesPerBlock) + UInt32(slot)
                    guard ino >= Layout.rootInode, ino < sb.inodeCount else { continue }
                    let offset = slot * Layout.inodeSize
                    let mode = UnsafeRawBufferPointer(data).u32(offset)
                    if mode == 0 { free += 1 } else if UnsafeRawBufferPointer(data).u32(offset + 4) == 0 { orphans.append(ino) }
                }
            }
        }
        freeCount = free
        return orphans
    }
}

extension DiskInode {
    /// One link fewer, never below zero even on a corrupt count.
    mutating func dropLink() { nlink = nlink > 0 ? nlink - 1 : 0 }
}
