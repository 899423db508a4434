import BentoKit

// MARK: - Extended attributes (feature `xattr`)
//
// An inode with extended attributes names one block of them (its
// `xattrBlock`). The block holds every name, and each value of up to
// `inlineMax` bytes; a larger value has data blocks of its own, listed in
// its entry. The whole block is rewritten at each change:
//
//     magic u32 | owner ino u32 | count u32 | checksum u32 | entries ...
//     entry: nameLength u8 | kind u8 | 0 u16 | valueLength u32 | name
//            | the value (kind 0) or its block numbers, u32 each (kind 1)
//
// The checksum covers the entries, seeded with the owner's number, so a
// block handed to the wrong inode or torn does not decode.

/// One attribute as its inode's attribute block holds it.
public struct XattrEntry: Equatable, Sendable {
    /// The full name, namespace included ("user.mime_type").
    public var name: [UInt8]
    /// The value's length in bytes.
    public var length: Int
    /// The value, when held in the attribute block.
    public var inline: [UInt8]
    /// The value's blocks, in order, when it has blocks of its own.
    public var blocks: [UInt32]

    public init(name: [UInt8], length: Int, inline: [UInt8] = [], blocks: [UInt32] = []) {
        self.name = name; self.length = length; self.inline = inline; self.blocks = blocks
    }

    var encodedSize: Int { 8 + name.count + (blocks.isEmpty ? inline.count : 4 * blocks.count) }
}

public enum XattrBlock {
    public static let magic: UInt32 = 0x5254_4158  // "XATR"
    static let headerSize = 16
    /// The longest name, namespace included (Linux's XATTR_NAME_MAX).
    public static let maxNameLength = 255
    /// The longest value (Linux's XATTR_SIZE_MAX).
    public static let maxValueLength = 65536
    /// Values up to this size are kept in the attribute block.
    public static let inlineMax = 1024

    /// Blocks a value of `length` bytes needs when not inline.
    public static func blockCount(_ length: Int) -> Int { (length + Layout.blockSize - 1) / Layout.blockSize }

    /// Whether `entries` fit one block.
    public static func fits(_ entries: [XattrEntry]) -> Bool {
        headerSize + entries.reduce(0) { $0 + $1.encodedSize } <= Layout.blockSize
    }

    /// Writes `entries` (which must fit) as the attribute block of `owner`.
    public static func encode(_ entries: [XattrEntry], owner: UInt32, into block: UnsafeMutableRawBufferPointer) {
        block.initializeMemory(as: UInt8.self, repeating: 0)
        block.set(0, magic)
        block.set(4, owner)
        block.set(8, UInt32(entries.count))
        var at = headerSize
        for entry in entries {
            block[at] = UInt8(entry.name.count)
            block[at + 1] = entry.blocks.isEmpty ? 0 : 1
            block.set(at + 4, UInt32(entry.length))
            at += 8
            for byte in entry.name { block[at] = byte; at += 1 }
            if entry.blocks.isEmpty {
                for byte in entry.inline { block[at] = byte; at += 1 }
            } else {
                for address in entry.blocks { block.set(at, address); at += 4 }
            }
        }
        block.set(12, checksum(UnsafeRawBufferPointer(rebasing: block[headerSize..<at]), owner: owner))
    }

    /// The entries of `owner`'s attribute block; nil if the block is not
    /// one (bad magic, owner, bounds or checksum). Block numbers are the
    /// caller's to check.
    public static func decode(_ block: UnsafeRawBufferPointer, owner: UInt32) -> [XattrEntry]? {
        guard block.count == Layout.blockSize, block.u32(0) == magic, block.u32(4) == owner else { return nil }
        let count = Int(block.u32(8))
        guard count <= (Layout.blockSize - headerSize) / 9 else { return nil }
        var entries: [XattrEntry] = []
        var at = headerSize
        for _ in 0..<count {
            guard at + 8 <= block.count else { return nil }
            let nameLength = Int(block[at]), kind = block[at + 1], length = Int(block.u32(at + 4))
            guard nameLength > 0, kind <= 1, length <= maxValueLength else { return nil }
            let payload = kind == 0 ? length : 4 * blockCount(length)
            guard kind == 0 ? length <= inlineMax : length > inlineMax else { return nil }
            let end = at + 8 + nameLength + payload
            guard end <= block.count else { return nil }
            let name = Array(block[(at + 8)..<(at + 8 + nameLength)])
            let start = at + 8 + nameLength
            if kind == 0 {
                entries.append(XattrEntry(name: name, length: length, inline: Array(block[start..<end])))
            } else {
                let blocks = (0..<blockCount(length)).map { block.u32(start + 4 * $0) }
                entries.append(XattrEntry(name: name, length: length, blocks: blocks))
            }
            at = end
        }
        guard block.u32(12) == checksum(UnsafeRawBufferPointer(rebasing: block[headerSize..<at]), owner: owner) else {
            return nil
        }
        return entries
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer, owner: UInt32) -> UInt32 {
        let h = Checksum.hash(bytes, seed: UInt64(owner))
        return UInt32(truncatingIfNeeded: h ^ (h >> 32))
    }
}
