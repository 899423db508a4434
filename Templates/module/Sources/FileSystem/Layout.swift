import BentoKit

/// The on-disk format, in blocks of 4 KiB:
///
///     0                  the superblock (`Geometry`)
///     bitmapStart ...    the block bitmap: bit b set = block b is in use
///     inodeStart ...     the inode table: 32 inodes of 128 bytes a block;
///                        inode 0 is unused, 1 is the root directory
///     dataStart ...      file data, directory records, symlink targets and
///                        indirect blocks
///
/// An all-zero device is formatted at its first mount (`Geometry.format`).
enum Layout {
    static let blockSize = 4096
    /// "BNTOTMPL", little-endian.
    static let magic: UInt64 = 0x4C50_4D54_4F54_4E42
    static let formatVersion: UInt32 = 1
    static let rootInode: InodeNumber = 1

    static let inodeSize = 128
    static let inodesPerBlock = blockSize / inodeSize
    /// Block numbers are 32 bits: 12 direct, one indirect, one double indirect.
    static let directCount = 12
    static let pointersPerBlock = blockSize / 4
    static let maxFileBlocks = UInt64(directCount + pointersPerBlock + pointersPerBlock * pointersPerBlock)

    /// A directory is a file of fixed-size records that never move, so a
    /// record's index is a readdir cookie that stays valid.
    static let recordSize = 256
    static let recordsPerBlock = blockSize / recordSize
    static let nameMax = recordSize - 6
}

/// Little-endian fields at byte offsets.
extension UnsafeRawBufferPointer {
    func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
    func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
}

extension UnsafeMutableRawBufferPointer {
    func put(_ value: UInt32, at: Int) { storeBytes(of: value.littleEndian, toByteOffset: at, as: UInt32.self) }
    func put(_ value: UInt64, at: Int) { storeBytes(of: value.littleEndian, toByteOffset: at, as: UInt64.self) }
}

/// The superblock: where each area starts.
struct Geometry: Equatable {
    var blockCount: UInt64
    var inodeCount: UInt64
    var bitmapStart: UInt64
    var inodeStart: UInt64
    var dataStart: UInt64
    /// Random at format time: exported state names the volume it is for.
    var volumeID: UInt64

    /// The layout for a device of `blockCount` blocks: one inode per 4
    /// blocks (at most 2^20).
    init(blockCount: UInt64, volumeID: UInt64) {
        self.blockCount = min(blockCount, UInt64(UInt32.max))
        self.volumeID = volumeID
        inodeCount = min(max(self.blockCount / 4, 64), 1 << 20)
        let bitsPerBlock = UInt64(Layout.blockSize * 8)
        bitmapStart = 1
        inodeStart = bitmapStart + (self.blockCount + bitsPerBlock - 1) / bitsPerBlock
        dataStart = inodeStart + (inodeCount + UInt64(Layout.inodesPerBlock) - 1) / UInt64(Layout.inodesPerBlock)
    }

    func encode(into block: UnsafeMutableRawBufferPointer) {
        block.put(Layout.magic, at: 0)
        block.put(Layout.formatVersion, at: 8)
        block.put(blockCount, at: 16)
        block.put(inodeCount, at: 24)
        block.put(bitmapStart, at: 32)
        block.put(inodeStart, at: 40)
        block.put(dataStart, at: 48)
        block.put(volumeID, at: 56)
    }

    /// nil for a block of zeroes (a device never formatted); throws for
    /// anything else that is not this file system's superblock.
    static func decode(_ block: UnsafeRawBufferPointer, deviceBlocks: UInt64) throws -> Geometry? {
        guard block.u64(0) == Layout.magic else {
            if block.allSatisfy({ $0 == 0 }) { return nil }
            throw Errno.EINVAL   // another file system: never format over it
        }
        guard block.u32(8) == Layout.formatVersion else { throw Errno.EINVAL }
        let geometry = Geometry(blockCount: block.u64(16), volumeID: block.u64(56))
        // Everything else follows from the block count: check that it does.
        guard geometry.blockCount <= deviceBlocks, geometry.dataStart < geometry.blockCount,
              block.u64(24) == geometry.inodeCount, block.u64(32) == geometry.bitmapStart,
              block.u64(40) == geometry.inodeStart, block.u64(48) == geometry.dataStart
        else { throw Errno.EUCLEAN }
        return geometry
    }

    /// Where inode `ino` lives: its block and byte offset.
    func place(of ino: InodeNumber) -> (block: UInt64, offset: Int) {
        (inodeStart + ino / UInt64(Layout.inodesPerBlock), Int(ino % UInt64(Layout.inodesPerBlock)) * Layout.inodeSize)
    }
}

/// One inode, as stored in the table (128 bytes).
struct Inode: Equatable {
    var mode: UInt32 = 0          // 0: a free inode
    var nlink: UInt32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
    var size: UInt64 = 0
    var atime = Timespec(seconds: 0, nanoseconds: 0)
    var mtime = Timespec(seconds: 0, nanoseconds: 0)
    var ctime = Timespec(seconds: 0, nanoseconds: 0)
    /// For a directory: the directory it is in (its "..").
    var parent: UInt32 = 0
    var rdev: UInt32 = 0
    /// Block pointers: `Layout.directCount` direct, then the indirect and
    /// the double indirect block; 0 for none (a hole reads as zeroes).
    var blocks = [UInt32](repeating: 0, count: Layout.directCount + 2)
    /// Counts reuses of the inode number.
    var generation: UInt32 = 0

    var type: UInt32 { mode & FileMode.typeMask }
    var isDirectory: Bool { type == FileMode.directory }
    var isRegular: Bool { type == FileMode.regular }

    init() {}

    init(_ b: UnsafeRawBufferPointer) {
        mode = b.u32(0); nlink = b.u32(4); uid = b.u32(8); gid = b.u32(12); size = b.u64(16)
        atime = Timespec(seconds: Int64(bitPattern: b.u64(24)), nanoseconds: b.u32(32))
        mtime = Timespec(seconds: Int64(bitPattern: b.u64(36)), nanoseconds: b.u32(44))
        ctime = Timespec(seconds: Int64(bitPattern: b.u64(48)), nanoseconds: b.u32(56))
        parent = b.u32(60); rdev = b.u32(64)
        blocks = (0..<Layout.directCount + 2).map { b.u32(68 + 4 * $0) }
        generation = b.u32(124)
    }

    func encode(into b: UnsafeMutableRawBufferPointer) {
        b.put(mode, at: 0); b.put(nlink, at: 4); b.put(uid, at: 8); b.put(gid, at: 12); b.put(size, at: 16)
        b.put(UInt64(bitPattern: atime.seconds), at: 24); b.put(atime.nanoseconds, at: 32)
        b.put(UInt64(bitPattern: mtime.seconds), at: 36); b.put(mtime.nanoseconds, at: 44)
        b.put(UInt64(bitPattern: ctime.seconds), at: 48); b.put(ctime.nanoseconds, at: 56)
        b.put(parent, at: 60); b.put(rdev, at: 64)
        for (i, block) in blocks.enumerated() { b.put(block, at: 68 + 4 * i) }
        b.put(generation, at: 124)
    }
}

/// One directory record (256 bytes): inode number (0: an empty slot),
/// name length, file type, name.
struct DirectoryRecord {
    var ino: UInt32
    var type: UInt32
    var name: [UInt8]

    init(ino: UInt32, type: UInt32, name: [UInt8]) { self.ino = ino; self.type = type; self.name = name }

    init(_ b: UnsafeRawBufferPointer) {
        ino = b.u32(0)
        let length = min(Int(b[4]), Layout.nameMax)
        type = UInt32(b[5]) << 12
        name = Array(b[6..<6 + length])
    }

    func encode(into b: UnsafeMutableRawBufferPointer) {
        b.put(ino, at: 0)
        b[4] = UInt8(name.count)
        b[5] = UInt8(type >> 12)
        for (i, byte) in name.enumerated() { b[6 + i] = byte }
    }
}
