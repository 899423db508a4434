import BentoKit
import BentoServices
import XV6Layout

/// Builds small xv6 images for the tests by raw block edits, keeping them
/// consistent (bitmap, link counts, block counts) unless a test breaks them.
final class ImageBuilder: @unchecked Sendable {  // tests share one only to copy it
    let device: MemoryBlockDevice
    let sb: Superblock
    static let now = Timespec(seconds: 1_700_000_000, nanoseconds: 0)

    init(blocks: UInt64 = 512, inodes: UInt32? = nil) {
        device = MemoryBlockDevice(blockCount: blocks)
        sb = try! Format.format(device, inodeCount: inodes, uuid: (1, 2), now: Self.now)
    }

    /// An independent copy of another image.
    init(copying other: ImageBuilder) {
        device = MemoryBlockDevice(image: other.device.snapshot())
        sb = other.sb
    }

    // MARK: Raw blocks

    func read(_ block: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Layout.blockSize)
        bytes.withUnsafeMutableBytes { try! device.read(block: block, into: $0) }
        return bytes
    }

    func write(_ block: UInt64, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { try! device.write(block: block, from: $0) }
    }

    func edit(_ block: UInt64, _ change: (UnsafeMutableRawBufferPointer) -> Void) {
        var bytes = read(block)
        bytes.withUnsafeMutableBytes { change($0) }
        write(block, bytes)
    }

    // MARK: Inodes

    func inode(_ ino: UInt32) -> DiskInode { decodedInode(ino)! }

    /// The inode, or nil if its slot does not decode.
    func decodedInode(_ ino: UInt32) -> DiskInode? {
        let (block, offset) = sb.inodeLocation(ino)
        return read(block).withUnsafeBytes { buffer in
            try? DiskInode.decode(ino: ino, UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + Layout.inodeSize]))
        }
    }

    /// Writes an inode with a valid checksum.
    func setInode(_ ino: UInt32, _ inode: DiskInode) {
        let (block, offset) = sb.inodeLocation(ino)
        edit(block) { inode.encode(ino: ino, into: UnsafeMutableRawBufferPointer(rebasing: $0[offset..<offset + Layout.inodeSize])) }
    }

    func changeInode(_ ino: UInt32, _ change: (inout DiskInode) -> Void) {
        var node = inode(ino)
        change(&node)
        setInode(ino, node)
    }

    func allocateInode() -> UInt32 {
        for ino in 2..<sb.inodeCount where inode(ino).isFree { return ino }
        fatalError("no free inode")
    }

    // MARK: Bitmap

    func isUsed(_ block: UInt64) -> Bool {
        let bit = Int(block % UInt64(Layout.bitsPerBlock))
        return read(UInt64(sb.bitmapStart) + block / UInt64(Layout.bitsPerBlock))[bit / 8] & (1 << (bit % 8)) != 0
    }

    func setUsed(_ block: UInt64, _ used: Bool) {
        let bit = Int(block % UInt64(Layout.bitsPerBlock))
        edit(UInt64(sb.bitmapStart) + block / UInt64(Layout.bitsPerBlock)) { bytes in
            if used { bytes[bit / 8] |= UInt8(1 << (bit % 8)) } else { bytes[bit / 8] &= ~UInt8(1 << (bit % 8)) }
        }
    }

    /// A zeroed data block, marked used.
    func allocateBlock() -> UInt32 {
        for block in UInt64(sb.dataStart)..<sb.totalBlocks where !isUsed(block) {
            setUsed(block, true)
            write(block, [UInt8](repeating: 0, count: Layout.blockSize))
            return UInt32(block)
        }
        fatalError("no free block")
    }

    // MARK: Block maps

    /// Gives file block `index` a new block, adding indirect blocks as needed.
    func mapNewBlock(_ node: inout DiskInode, index: Int) -> UInt32 {
        let block = allocateBlock()
        node.blockCount += 1
        if index < Layout.directCount {
            node.direct[index] = block
            return block
        }
        let perBlock = Layout.addressesPerBlock
        var rest = index - Layout.directCount
        var table: UInt32
        if rest < perBlock {
            if node.indirect == 0 { node.indirect = allocateBlock(); node.blockCount += 1 }
            table = node.indirect
        } else {
            rest -= perBlock
            if node.doubleIndirect == 0 { node.doubleIndirect = allocateBlock(); node.blockCount += 1 }
            let top = UInt64(node.doubleIndirect)
            var second = read(top).withUnsafeBytes { $0.u32(4 * (rest / perBlock)) }
            if second == 0 {
                second = allocateBlock()
                node.blockCount += 1
                let slot = 4 * (rest / perBlock), value = second
                edit(top) { $0.set(slot, value) }
            }
            table = second
            rest %= perBlock
        }
        edit(UInt64(table)) { $0.set(4 * rest, block) }
        return block
    }

    // MARK: Directories and files

    /// Adds an entry to a directory, growing it by a block if it is full.
    func addEntry(_ name: [UInt8], in dir: UInt32, ino: UInt32) {
        let type = DirectoryRecord.typeByte(mode: inode(ino).mode)
        let need = DirectoryRecord.length(nameLength: name.count)
        var node = inode(dir)
        let blocks = Int(node.size) / Layout.blockSize
        for index in 0..<blocks {
            let block = UInt64(node.direct[index])
            var placed = false
            edit(block) { bytes in
                var offset = 0
                while offset < Layout.blockSize, !placed {
                    let record = DirectoryRecord.parse(UnsafeRawBufferPointer(bytes), at: offset)!
                    let used = record.ino == 0 ? 0 : DirectoryRecord.length(nameLength: record.nameLength)
                    if record.recordLength - used >= need {
                        if used > 0 { bytes.set(offset + 4, UInt16(used)) }
                        DirectoryRecord.write(bytes, at: offset + used, ino: ino, recordLength: record.recordLength - used,
                                              name: name, type: type)
                        placed = true
                    }
                    offset += record.recordLength
                }
            }
            if placed { return }
        }
        let block = mapNewBlock(&node, index: blocks)
        edit(UInt64(block)) { bytes in
            DirectoryRecord.initializeEmpty(bytes)
            DirectoryRecord.write(bytes, at: 0, ino: ino, recordLength: Layout.blockSize, name: name, type: type)
        }
        node.size += UInt64(Layout.blockSize)
        setInode(dir, node)
    }

    private func newInode(mode: UInt32, nlink: UInt32) -> (UInt32, DiskInode) {
        var node = DiskInode()
        node.mode = mode
        node.nlink = nlink
        node.atime = Self.now; node.mtime = Self.now; node.ctime = Self.now
        node.generation = 1
        return (allocateInode(), node)
    }

    /// A regular file of `bytes` bytes (holes at the file blocks in `holes`).
    @discardableResult
    func addFile(_ name: String, in dir: UInt32 = Layout.rootInode, bytes: Int, holes: Set<Int> = []) -> UInt32 {
        var (ino, node) = newInode(mode: FileMode.regular | 0o644, nlink: 1)
        node.size = UInt64(bytes)
        setInode(ino, node)  // reserve the slot before allocating blocks
        for index in 0..<((bytes + Layout.blockSize - 1) / Layout.blockSize) where !holes.contains(index) {
            let block = mapNewBlock(&node, index: index)
            edit(UInt64(block)) { $0.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: index + 1)) }
        }
        setInode(ino, node)
        addEntry(Array(name.utf8), in: dir, ino: ino)
        return ino
    }

    @discardableResult
    func mkdir(_ name: String, in parent: UInt32 = Layout.rootInode) -> UInt32 {
        var (ino, node) = newInode(mode: FileMode.directory | 0o755, nlink: 2)
        setInode(ino, node)
        let block = mapNewBlock(&node, index: 0)
        node.size = UInt64(Layout.blockSize)
        let dirType = DirectoryRecord.typeByte(mode: FileMode.directory)
        edit(UInt64(block)) { bytes in
            DirectoryRecord.initializeEmpty(bytes)
            DirectoryRecord.write(bytes, at: 0, ino: ino, recordLength: 12, name: [0x2E], type: dirType)
            DirectoryRecord.write(bytes, at: 12, ino: parent, recordLength: Layout.blockSize - 12, name: [0x2E, 0x2E],
                                  type: dirType)
        }
        setInode(ino, node)
        addEntry(Array(name.utf8), in: parent, ino: ino)
        changeInode(parent) { $0.nlink += 1 }
        return ino
    }

    @discardableResult
    func symlink(_ name: String, in dir: UInt32 = Layout.rootInode, target: String) -> UInt32 {
        var (ino, node) = newInode(mode: FileMode.symlink | 0o777, nlink: 1)
        setInode(ino, node)
        let block = mapNewBlock(&node, index: 0)
        let bytes = Array(target.utf8)
        edit(UInt64(block)) { buffer in for (i, byte) in bytes.enumerated() { buffer[i] = byte } }
        node.size = UInt64(bytes.count)
        setInode(ino, node)
        addEntry(Array(name.utf8), in: dir, ino: ino)
        return ino
    }

    /// Another name for an existing non-directory.
    func link(_ name: String, in dir: UInt32 = Layout.rootInode, to ino: UInt32) {
        addEntry(Array(name.utf8), in: dir, ino: ino)
        changeInode(ino) { $0.nlink += 1 }
    }

    /// A small tree: directories, files (one with indirect blocks, one with a
    /// hole), a symlink and a hard link.
    func populate() {
        let docs = mkdir("docs")
        let deep = mkdir("deep", in: docs)
        addFile("readme", bytes: 100)
        addFile("big", in: docs, bytes: 45 * Layout.blockSize + 17)
        let sparse = addFile("sparse", in: deep, bytes: 5 * Layout.blockSize, holes: [1, 3])
        symlink("link", target: "docs/big")
        link("sparse-again", to: sparse)
        for i in 0..<20 { addFile("file-\(i)-with-a-longer-name", in: docs, bytes: i * 300) }
    }
}
