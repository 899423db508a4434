import BentoKit

/// The xv6fs on-disk layout, in 4 KiB blocks:
///
///     [ boot | super | log header | log ... | inodes ... | bitmap ... | data ... ]
///       0      1      logStart                inodeStart   bitmapStart  dataStart
///
/// All integers are little-endian. Block numbers are 32-bit on disk.
public enum Layout {
    public static let blockSize = 4096
    public static let superblockNumber: UInt64 = 1
    public static let magic: UInt64 = 0x4F54_4E45_4236_5658  // "XV6BENTO"
    public static let formatVersion: UInt32 = 1

    public static let inodeSize = 256
    public static let inodesPerBlock = blockSize / inodeSize
    public static let rootInode: UInt32 = 1

    /// Block addresses held in the inode itself, then one indirect and one
    /// double-indirect block of 1024 addresses each.
    public static let directCount = 38
    public static let addressesPerBlock = blockSize / 4
    public static let maxFileBlocks = UInt64(directCount + addressesPerBlock + addressesPerBlock * addressesPerBlock)
    public static let maxFileSize = maxFileBlocks * UInt64(blockSize)
    /// With the `bigfile` feature, a triple-indirect block adds 1024³ blocks:
    /// about 4 TiB.
    public static let maxBigFileBlocks = maxFileBlocks + UInt64(addressesPerBlock * addressesPerBlock * addressesPerBlock)
    public static let maxBigFileSize = maxBigFileBlocks * UInt64(blockSize)

    /// With the `unwritten` feature, a block map entry with this bit set
    /// names a preallocated block that reads as zeroes. Only images of at
    /// most 2^31 blocks (8 TiB) may use it, so real block numbers never
    /// have the bit.
    public static let unwrittenMark: UInt32 = 1 << 31
    public static let maxUnwrittenImageBlocks = UInt64(unwrittenMark)

    public static let maxNameLength = 255
    public static let maxLinks: UInt32 = 65000
    public static let maxSymlinkLength = blockSize - 1

    /// Bits of the free bitmap in one block.
    public static let bitsPerBlock = blockSize * 8

    /// The most blocks one transaction can hold: what fits in the header.
    public static let maxLogBlocks = (blockSize - LogHeader.listOffset) / 4
    public static let minLogBlocks = 64
}

// MARK: - Little-endian field access on raw blocks
//
// Inlinable, so that the file system's loops over records and tables do
// not make a call per field.

extension UnsafeRawBufferPointer {
    @inlinable public func u32(_ offset: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    @inlinable public func u16(_ offset: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
    @inlinable public func u64(_ offset: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
}

extension UnsafeMutableRawBufferPointer {
    @inlinable public func u32(_ offset: Int) -> UInt32 { UnsafeRawBufferPointer(self).u32(offset) }
    @inlinable public func u16(_ offset: Int) -> UInt16 { UnsafeRawBufferPointer(self).u16(offset) }
    @inlinable public func u64(_ offset: Int) -> UInt64 { UnsafeRawBufferPointer(self).u64(offset) }
    @inlinable public func set(_ offset: Int, _ value: UInt32) { storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self) }
    @inlinable public func set(_ offset: Int, _ value: UInt16) { storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self) }
    @inlinable public func set(_ offset: Int, _ value: UInt64) { storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self) }
}

// MARK: - Checksums

/// A fast 64-bit hash over whole 8-byte words (and a tail), used to detect
/// torn or corrupted metadata: not cryptographic.
public enum Checksum {
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        hash(bytes, seed: seed, copyingTo: nil)
    }

    /// Continues a running hash with more bytes.
    public static func combine(_ running: UInt64, _ bytes: UnsafeRawBufferPointer) -> UInt64 {
        hash(bytes, seed: running, copyingTo: nil)
    }

    /// `combine`, copying the bytes to `target` on the way: the stores cost
    /// nothing beside the hash's chain of multiplications.
    public static func combine(_ running: UInt64, copying bytes: UnsafeRawBufferPointer,
                               to target: UnsafeMutableRawPointer) -> UInt64 {
        hash(bytes, seed: running, copyingTo: target)
    }

    /// The one definition of the hash (an on-disk format).
    @inline(__always)
    private static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64,
                             copyingTo target: UnsafeMutableRawPointer?) -> UInt64 {
        var h = seed ^ 0x9E37_79B9_7F4A_7C15
        let words = bytes.count / 8
        var i = 0
        while i < words {
            let raw = bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
            target?.storeBytes(of: raw, toByteOffset: i * 8, as: UInt64.self)
            h = (h ^ UInt64(littleEndian: raw)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 32
            i += 1
        }
        var tail: UInt64 = 0
        for j in (words * 8)..<bytes.count {
            target?.storeBytes(of: bytes[j], toByteOffset: j, as: UInt8.self)
            tail = (tail << 8) | UInt64(bytes[j])
        }
        h = (h ^ tail ^ UInt64(bytes.count)) &* 0xC4CE_B9FE_1A85_EC53
        return h ^ (h >> 29)
    }
}

// MARK: - Superblock (block 1)

public struct Superblock: Equatable, Sendable {
    public var totalBlocks: UInt64
    public var inodeCount: UInt32
    /// Log data blocks, after the header block at `logStart`.
    public var logBlocks: UInt32
    public var logStart: UInt32
    public var inodeStart: UInt32
    public var bitmapStart: UInt32
    public var bitmapBlocks: UInt32
    public var dataStart: UInt32
    public var uuid: (UInt64, UInt64)
    public var createdSeconds: Int64
    /// The format features the image uses (bytes 80 ..< 92, zero in images
    /// made before features existed).
    public var features = FeatureSet.none

    public static func == (a: Superblock, b: Superblock) -> Bool {
        a.totalBlocks == b.totalBlocks && a.inodeCount == b.inodeCount && a.logBlocks == b.logBlocks
            && a.logStart == b.logStart && a.inodeStart == b.inodeStart && a.bitmapStart == b.bitmapStart
            && a.bitmapBlocks == b.bitmapBlocks && a.dataStart == b.dataStart && a.uuid == b.uuid
            && a.createdSeconds == b.createdSeconds && a.features == b.features
    }

    public var inodeBlocks: UInt32 { UInt32((UInt64(inodeCount) + UInt64(Layout.inodesPerBlock) - 1) / UInt64(Layout.inodesPerBlock)) }

    /// The layout for a device of `totalBlocks` blocks.
    public static func plan(totalBlocks: UInt64, inodeCount: UInt32? = nil, logBlocks: UInt32? = nil) -> Superblock? {
        guard totalBlocks >= 128, totalBlocks <= UInt64(UInt32.max) else { return nil }
        let inodes = inodeCount ?? UInt32(min(max(totalBlocks / 4, 64), UInt64(UInt32.max / 2)))
        let log = logBlocks ?? UInt32(min(UInt64(Layout.maxLogBlocks), max(UInt64(Layout.minLogBlocks), totalBlocks / 16)))
        guard inodes >= 2, log >= UInt32(Layout.minLogBlocks), log <= UInt32(Layout.maxLogBlocks) else { return nil }
        // In 64 bits: a corrupt superblock may carry any counts.
        let logStart: UInt64 = 2
        let inodeStart = logStart + 1 + UInt64(log)
        let inodeBlocks = (UInt64(inodes) + UInt64(Layout.inodesPerBlock) - 1) / UInt64(Layout.inodesPerBlock)
        let bitmapStart = inodeStart + inodeBlocks
        let bitmapBlocks = (totalBlocks + UInt64(Layout.bitsPerBlock) - 1) / UInt64(Layout.bitsPerBlock)
        let dataStart = bitmapStart + bitmapBlocks
        guard dataStart + 8 <= totalBlocks else { return nil }
        return Superblock(totalBlocks: totalBlocks, inodeCount: inodes, logBlocks: log, logStart: UInt32(logStart),
                          inodeStart: UInt32(inodeStart), bitmapStart: UInt32(bitmapStart),
                          bitmapBlocks: UInt32(bitmapBlocks), dataStart: UInt32(dataStart), uuid: (0, 0), createdSeconds: 0)
    }

    static let checksumOffset = 120

    public func encode(into block: UnsafeMutableRawBufferPointer) {
        block.initializeMemory(as: UInt8.self, repeating: 0)
        block.set(0, Layout.magic)
        block.set(8, Layout.formatVersion)
        block.set(12, UInt32(Layout.blockSize))
        block.set(16, totalBlocks)
        block.set(24, inodeCount)
        block.set(28, logBlocks)
        block.set(32, logStart)
        block.set(36, inodeStart)
        block.set(40, bitmapStart)
        block.set(44, bitmapBlocks)
        block.set(48, dataStart)
        block.set(56, uuid.0)
        block.set(64, uuid.1)
        block.set(72, UInt64(bitPattern: createdSeconds))
        block.set(80, features.compat)
        block.set(84, features.roCompat)
        block.set(88, features.incompat)
        let sum = Checksum.hash(UnsafeRawBufferPointer(rebasing: block[0..<Self.checksumOffset]))
        block.set(Self.checksumOffset, sum)
    }

    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case notXv6
        case unsupportedVersion(UInt32)
        case badChecksum
        case inconsistent(String)
        public var description: String {
            switch self {
            case .notXv6: "no xv6fs superblock (bad magic number)"
            case .unsupportedVersion(let v): "unsupported xv6fs format version \(v)"
            case .badChecksum: "superblock checksum mismatch"
            case .inconsistent(let why): "superblock inconsistent: \(why)"
            }
        }
    }

    /// Decodes and validates a superblock for a device of `deviceBlocks` blocks.
    public static func decode(_ block: UnsafeRawBufferPointer, deviceBlocks: UInt64) throws(DecodeError) -> Superblock {
        guard block.u64(0) == Layout.magic else { throw .notXv6 }
        let version = block.u32(8)
        guard version == Layout.formatVersion else { throw .unsupportedVersion(version) }
        let sum = Checksum.hash(UnsafeRawBufferPointer(rebasing: block[0..<checksumOffset]))
        guard block.u64(checksumOffset) == sum else { throw .badChecksum }
        guard block.u32(12) == UInt32(Layout.blockSize) else { throw .inconsistent("block size \(block.u32(12))") }
        let sb = Superblock(totalBlocks: block.u64(16), inodeCount: block.u32(24), logBlocks: block.u32(28),
                            logStart: block.u32(32), inodeStart: block.u32(36), bitmapStart: block.u32(40),
                            bitmapBlocks: block.u32(44), dataStart: block.u32(48),
                            uuid: (block.u64(56), block.u64(64)), createdSeconds: Int64(bitPattern: block.u64(72)),
                            features: FeatureSet(compat: block.u32(80), roCompat: block.u32(84), incompat: block.u32(88)))
        guard let expected = plan(totalBlocks: sb.totalBlocks, inodeCount: sb.inodeCount, logBlocks: sb.logBlocks),
              expected.logStart == sb.logStart, expected.inodeStart == sb.inodeStart,
              expected.bitmapStart == sb.bitmapStart, expected.bitmapBlocks == sb.bitmapBlocks,
              expected.dataStart == sb.dataStart
        else { throw .inconsistent("region boundaries do not match its sizes") }
        guard sb.totalBlocks <= deviceBlocks else {
            throw .inconsistent("file system has \(sb.totalBlocks) blocks, device only \(deviceBlocks)")
        }
        // Bit 31 of a block address marks it unwritten: on a larger image
        // it would be part of the address.
        guard !sb.features.contains(.unwritten) || sb.totalBlocks <= Layout.maxUnwrittenImageBlocks else {
            throw .inconsistent("the unwritten feature on \(sb.totalBlocks) blocks (it allows at most \(Layout.maxUnwrittenImageBlocks))")
        }
        return sb
    }

    /// Where inode `ino` lives: its block and byte offset.
    @inline(__always)
    public func inodeLocation(_ ino: UInt32) -> (block: UInt64, offset: Int) {
        (UInt64(inodeStart) + UInt64(ino) / UInt64(Layout.inodesPerBlock),
         Int(ino % UInt32(Layout.inodesPerBlock)) * Layout.inodeSize)
    }

    /// True for a block a transaction may change: the superblock (whose
    /// feature bits a first use sets), the inode table, the bitmap and data
    /// blocks. Versions before 3.0 did not log the superblock: their
    /// recovery ignores such a transaction whole.
    public func mayLog(_ block: UInt64) -> Bool {
        block == Layout.superblockNumber || (block >= UInt64(inodeStart) && block < totalBlocks)
    }

    /// True when a logged copy of block 1 is this superblock with other
    /// feature bits: the only change a transaction may make to it.
    public func acceptsLogged(_ block: UnsafeRawBufferPointer) -> Bool {
        do throws(DecodeError) {
            var logged = try Superblock.decode(block, deviceBlocks: totalBlocks)
            logged.features = features
            return logged == self
        } catch {
            return false
        }
    }

    /// True for a block number that may hold file data, directory entries or
    /// indirect addresses.
    @inline(__always)
    public func isDataBlock(_ block: UInt32) -> Bool {
        block >= dataStart && UInt64(block) < totalBlocks
    }
}

// MARK: - Inodes (256 bytes each; inode 0 is never used, 1 is the root)

public struct DiskInode: Equatable, Sendable {
    /// Type and permission bits as st_mode; 0 marks a free inode.
    public var mode: UInt32 = 0
    public var nlink: UInt32 = 0
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var size: UInt64 = 0
    /// Blocks allocated to the file, indirect blocks included.
    public var blockCount: UInt64 = 0
    public var atime = Timespec(seconds: 0, nanoseconds: 0)
    public var mtime = Timespec(seconds: 0, nanoseconds: 0)
    public var ctime = Timespec(seconds: 0, nanoseconds: 0)
    public var rdev: UInt32 = 0
    /// Bumped each time the inode number is reused.
    public var generation: UInt32 = 0
    public var direct = [UInt32](repeating: 0, count: Layout.directCount)
    public var indirect: UInt32 = 0
    public var doubleIndirect: UInt32 = 0
    /// The `bigfile` feature's block of 1024 double-indirect blocks.
    public var tripleIndirect: UInt32 = 0
    /// The block of the inode's extended attributes, 0 for none (feature
    /// `xattr`, XattrBlock).
    public var xattrBlock: UInt32 = 0

    public init() {}

    public var isFree: Bool { mode == 0 }
    public var type: UInt32 { mode & FileMode.typeMask }
    public var isDirectory: Bool { type == FileMode.directory }
    public var isRegular: Bool { type == FileMode.regular }
    public var isSymlink: Bool { type == FileMode.symlink }

    static let checksumOffset = 252

    public func encode(ino: UInt32, into slot: UnsafeMutableRawBufferPointer) {
        slot.set(0, mode)
        slot.set(4, nlink)
        slot.set(8, uid)
        slot.set(12, gid)
        slot.set(16, size)
        slot.set(24, blockCount)
        slot.set(32, UInt64(bitPattern: atime.seconds))
        slot.set(40, UInt64(bitPattern: mtime.seconds))
        slot.set(48, UInt64(bitPattern: ctime.seconds))
        slot.set(56, atime.nanoseconds)
        slot.set(60, mtime.nanoseconds)
        slot.set(64, ctime.nanoseconds)
        slot.set(68, rdev)
        slot.set(72, generation)
        slot.set(76, UInt32(0))
        for i in 0..<Layout.directCount { slot.set(80 + 4 * i, direct[i]) }
        slot.set(232, indirect)
        slot.set(236, doubleIndirect)
        slot.set(240, tripleIndirect); slot.set(244, xattrBlock); slot.set(248, UInt32(0))
        slot.set(Self.checksumOffset, Self.checksum(ino: ino, UnsafeRawBufferPointer(slot)))
    }

    static func checksum(ino: UInt32, _ slot: UnsafeRawBufferPointer) -> UInt32 {
        let h = Checksum.hash(UnsafeRawBufferPointer(rebasing: slot[0..<checksumOffset]), seed: UInt64(ino))
        return UInt32(truncatingIfNeeded: h ^ (h >> 32))
    }

    /// Decodes inode `ino` from its 256-byte slot. A slot of all zeroes is a
    /// free inode; anything else must carry a valid checksum and type.
    public static func decode(ino: UInt32, _ slot: UnsafeRawBufferPointer) throws(Errno) -> DiskInode {
        var inode = DiskInode()
        inode.mode = slot.u32(0)
        if inode.mode == 0 {
            // A freed inode keeps its generation so the next user bumps it.
            inode.generation = slot.u32(72)
            return inode
        }
        guard slot.u32(checksumOffset) == checksum(ino: ino, slot) else { throw .EUCLEAN }
        switch inode.mode & FileMode.typeMask {
        case FileMode.regular, FileMode.directory, FileMode.symlink, FileMode.characterDevice,
             FileMode.blockDevice, FileMode.fifo, FileMode.socket: break
        default: throw .EUCLEAN
        }
        inode.nlink = slot.u32(4)
        inode.uid = slot.u32(8)
        inode.gid = slot.u32(12)
        inode.size = slot.u64(16)
        inode.blockCount = slot.u64(24)
        inode.atime = Timespec(seconds: Int64(bitPattern: slot.u64(32)), nanoseconds: slot.u32(56))
        inode.mtime = Timespec(seconds: Int64(bitPattern: slot.u64(40)), nanoseconds: slot.u32(60))
        inode.ctime = Timespec(seconds: Int64(bitPattern: slot.u64(48)), nanoseconds: slot.u32(64))
        inode.rdev = slot.u32(68)
        inode.generation = slot.u32(72)
        for i in 0..<Layout.directCount { inode.direct[i] = slot.u32(80 + 4 * i) }
        inode.indirect = slot.u32(232)
        inode.doubleIndirect = slot.u32(236)
        inode.tripleIndirect = slot.u32(240)
        inode.xattrBlock = slot.u32(244)
        // Whether the image may hold files this big (`bigfile`) is the
        // reader's to check.
        guard inode.size <= Layout.maxBigFileSize else { throw .EUCLEAN }
        return inode
    }

    /// Writes an all-zero free slot that remembers the generation.
    public static func encodeFree(generation: UInt32, into slot: UnsafeMutableRawBufferPointer) {
        slot.initializeMemory(as: UInt8.self, repeating: 0)
        slot.set(72, generation)
    }
}

// MARK: - Directory entries
//
// A directory's data blocks hold variable-length records that never cross a
// block boundary and together cover each block exactly:
//
//     ino u32 | recordLength u16 | nameLength u8 | type u8 | name ... | padding to 4
//
// ino 0 marks unused space. Removing an entry folds its space into the record
// before it (or zeroes ino if it is first in its block), so entries never move
// and a record's byte offset in the directory is a stable readdir cookie.

public enum DirectoryRecord {
    public static let headerSize = 8
    public static let minimumLength = 12

    /// The space a record for a name of `nameLength` bytes needs.
    @inline(__always)
    public static func length(nameLength: Int) -> Int { (headerSize + nameLength + 3) & ~3 }

    /// The type byte for a mode (its S_IFMT bits >> 12, as d_type).
    @inline(__always)
    public static func typeByte(mode: UInt32) -> UInt8 { UInt8(truncatingIfNeeded: (mode & FileMode.typeMask) >> 12) }

    /// One record as parsed from a block, after bounds checks.
    public struct Parsed {
        public var ino: UInt32
        public var recordLength: Int
        public var nameLength: Int
        public var type: UInt8
        @inlinable init(ino: UInt32, recordLength: Int, nameLength: Int, type: UInt8) {
            self.ino = ino; self.recordLength = recordLength; self.nameLength = nameLength; self.type = type
        }
    }

    /// Parses the record at `offset` in `block`; nil if it is malformed.
    /// Inlinable: directory operations parse every record of a block.
    @inlinable
    public static func parse(_ block: UnsafeRawBufferPointer, at offset: Int) -> Parsed? {
        guard offset + headerSize <= block.count else { return nil }
        let length = Int(block.u16(offset + 4))
        let nameLength = Int(block[offset + 6])
        guard length >= minimumLength, length & 3 == 0, offset + length <= block.count else { return nil }
        let ino = block.u32(offset)
        if ino != 0 {
            guard nameLength > 0, headerSize + nameLength <= length else { return nil }
        }
        return Parsed(ino: ino, recordLength: length, nameLength: nameLength, type: block[offset + 7])
    }

    public static func write(_ block: UnsafeMutableRawBufferPointer, at offset: Int, ino: UInt32,
                             recordLength: Int, name: [UInt8], type: UInt8) {
        block.set(offset, ino)
        block.set(offset + 4, UInt16(recordLength))
        block[offset + 6] = UInt8(name.count)
        block[offset + 7] = type
        for (i, byte) in name.enumerated() { block[offset + headerSize + i] = byte }
        let used = headerSize + name.count
        if used < recordLength {
            for i in used..<recordLength { block[offset + i] = 0 }
        }
    }

    /// Makes `block` one empty record spanning it.
    public static func initializeEmpty(_ block: UnsafeMutableRawBufferPointer) {
        block.initializeMemory(as: UInt8.self, repeating: 0)
        block.set(4, UInt16(Layout.blockSize))
    }
}

// MARK: - Log header (block logStart)
//
// The header names the home block of each log block and carries a checksum
// over itself and the log blocks' contents. A transaction is committed once
// a header with a valid checksum is durable; a torn or stale header fails
// its checksum and is ignored.

public struct LogHeader: Equatable, Sendable {
    public static let magic: UInt32 = 0x474F_4C58  // "XLOG"
    public static let listOffset = 24
    public var sequence: UInt64
    public var blocks: [UInt32]
    public var checksum: UInt64

    public init(sequence: UInt64, blocks: [UInt32], checksum: UInt64) {
        self.sequence = sequence; self.blocks = blocks; self.checksum = checksum
    }

    /// The hash the checksum starts from, before the log blocks' contents.
    public static func seed(sequence: UInt64, blocks: [UInt32]) -> UInt64 {
        var h = withUnsafeBytes(of: sequence.littleEndian) { Checksum.hash($0, seed: UInt64(blocks.count)) }
        for block in blocks {
            h = withUnsafeBytes(of: block.littleEndian) { Checksum.combine(h, $0) }
        }
        return h
    }

    public func encode(into block: UnsafeMutableRawBufferPointer) {
        block.initializeMemory(as: UInt8.self, repeating: 0)
        block.set(0, Self.magic)
        block.set(4, UInt32(blocks.count))
        block.set(8, sequence)
        block.set(16, checksum)
        for (i, b) in blocks.enumerated() { block.set(Self.listOffset + 4 * i, b) }
    }

    /// Decodes a header; nil when the block holds none (never written, or
    /// garbage). `capacity` bounds the block count.
    public static func decode(_ block: UnsafeRawBufferPointer, capacity: Int) -> LogHeader? {
        guard block.u32(0) == magic else { return nil }
        let count = Int(block.u32(4))
        guard count <= capacity, count <= Layout.maxLogBlocks else { return nil }
        let blocks = (0..<count).map { block.u32(listOffset + 4 * $0) }
        return LogHeader(sequence: block.u64(8), blocks: blocks, checksum: block.u64(16))
    }
}
