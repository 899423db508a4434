import BentoKit

/// mkfs: lays a fresh, empty xv6 file system onto a block device.
public enum Format {
    public enum Failure: Error, CustomStringConvertible {
        case tooSmall(UInt64)
        /// The unwritten feature on more than 2^31 blocks (Layout.unwrittenMark).
        case tooLargeForUnwritten(UInt64)
        case io(Errno)
        public var description: String {
            switch self {
            case .tooSmall(let blocks): "device of \(blocks) blocks is too small (or too large) for xv6fs"
            case .tooLargeForUnwritten(let blocks):
                "the unwritten feature allows at most \(Layout.maxUnwrittenImageBlocks) blocks, not \(blocks)"
            case .io(let e): "I/O error while formatting: \(e)"
            }
        }
    }

    /// True when the device already holds an xv6 superblock.
    public static func holdsFileSystem(_ device: any BlockDevice) -> Bool {
        guard device.blockCount > Layout.superblockNumber else { return false }
        var page = [UInt8](repeating: 0, count: Layout.blockSize)
        return page.withUnsafeMutableBytes { buf in
            guard (try? device.read(block: Layout.superblockNumber, into: buf)) != nil else { return false }
            return UnsafeRawBufferPointer(buf).u64(0) == Layout.magic
        }
    }

    /// Formats `device`; returns the superblock written. `progress` is told
    /// after each block written: (blocks written, blocks to write).
    @discardableResult
    public static func format(_ device: any BlockDevice, inodeCount: UInt32? = nil, logBlocks: UInt32? = nil,
                              features: FeatureSet = .none,
                              uuid: (UInt64, UInt64) = (UInt64.random(in: 1...UInt64.max), UInt64.random(in: 0...UInt64.max)),
                              now: Timespec, progress: ((UInt64, UInt64) -> Void)? = nil) throws(Failure) -> Superblock {
        guard var sb = Superblock.plan(totalBlocks: device.blockCount, inodeCount: inodeCount, logBlocks: logBlocks) else {
            throw .tooSmall(device.blockCount)
        }
        guard !features.contains(.unwritten) || sb.totalBlocks <= Layout.maxUnwrittenImageBlocks else {
            throw .tooLargeForUnwritten(sb.totalBlocks)
        }
        sb.uuid = uuid
        sb.features = features
        sb.createdSeconds = now.seconds
        let rootBlock = sb.dataStart
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: Layout.blockSize, alignment: 4096)
        defer { page.deallocate() }
        // Boot block, log and inode table, bitmap, root directory, root inode, superblock.
        let toWrite = 1 + UInt64(sb.bitmapStart - sb.logStart) + UInt64(sb.bitmapBlocks) + 3
        var written: UInt64 = 0
        func put(_ block: UInt64) throws(Failure) {
            do { try device.write(block: block, from: UnsafeRawBufferPointer(page)) } catch { throw .io(error as? Errno ?? .EIO) }
            written += 1
            progress?(written, toWrite)
        }

        // Boot block, log header and inode table start zeroed.
        page.initializeMemory(as: UInt8.self, repeating: 0)
        try put(0)
        for b in UInt64(sb.logStart)..<UInt64(sb.bitmapStart) { try put(b) }

        // Bitmap: every block before dataStart, and the root directory's block.
        let usedThrough = UInt64(rootBlock)  // inclusive
        for i in 0..<UInt64(sb.bitmapBlocks) {
            page.initializeMemory(as: UInt8.self, repeating: 0)
            let first = i * UInt64(Layout.bitsPerBlock)
            if first <= usedThrough {
                let last = min(usedThrough, first + UInt64(Layout.bitsPerBlock) - 1)
                for bit in first...last {
                    let local = Int(bit - first)
                    page[local / 8] |= UInt8(1 << (local % 8))
                }
            }
            try put(UInt64(sb.bitmapStart) + i)
        }

        // The root directory: "." and "..", both itself.
        DirectoryRecord.initializeEmpty(page)
        DirectoryRecord.write(page, at: 0, ino: Layout.rootInode, recordLength: 12, name: [0x2E],
                              type: DirectoryRecord.typeByte(mode: FileMode.directory))
        DirectoryRecord.write(page, at: 12, ino: Layout.rootInode, recordLength: Layout.blockSize - 12,
                              name: [0x2E, 0x2E], type: DirectoryRecord.typeByte(mode: FileMode.directory))
        try put(UInt64(rootBlock))

        var root = DiskInode()
        root.mode = FileMode.directory | 0o755
        root.nlink = 2
        root.size = UInt64(Layout.blockSize)
        root.blockCount = 1
        root.atime = now; root.mtime = now; root.ctime = now
        root.generation = 1
        root.direct[0] = rootBlock
        let (inodeBlock, offset) = sb.inodeLocation(Layout.rootInode)
        page.initializeMemory(as: UInt8.self, repeating: 0)
        root.encode(ino: Layout.rootInode, into: UnsafeMutableRawBufferPointer(rebasing: page[offset..<offset + Layout.inodeSize]))
        try put(inodeBlock)

        // The superblock last: until it is there, the device is no file system.
        sb.encode(into: page)
        try put(Layout.superblockNumber)
        do { try device.flush() } catch { throw .io(error as? Errno ?? .EIO) }
        return sb
    }
}
