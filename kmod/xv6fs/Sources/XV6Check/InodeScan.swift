import BentoKit
import XV6Layout

/// Pass 1: every inode slot. Allocated inodes must decode; their block maps
/// are followed (claiming blocks), and their sizes and block counts checked.
extension CheckRun {
    func scanInodes() {
        var tableBlock = UInt64.max
        var table: [UInt8]?
        for ino in 0..<sb.inodeCount {
            let (block, offset) = sb.inodeLocation(ino)
            if block != tableBlock {
                tick(1, UInt64(ino), of: UInt64(sb.inodeCount))
                tableBlock = block
                table = readBlock(block, "inode table")
            }
            guard let bytes = table else {
                if ino != 0 { corrupt.insert(UInt64(ino)) }
                continue
            }
            let mode = bytes.u32(offset)
            guard mode != 0 else { continue }
            guard ino != 0 else {
                error(.inodeCorrupt, "inode 0 is reserved but marked in use", inode: 0)
                continue
            }
            let slot = offset..<(offset + Layout.inodeSize)
            let decoded = bytes.withUnsafeBytes { buffer in
                try? DiskInode.decode(ino: ino, UnsafeRawBufferPointer(rebasing: buffer[slot]))
            }
            guard let inode = decoded else {
                corrupt.insert(UInt64(ino))
                error(.inodeCorrupt, "inode \(ino) is corrupt (bad checksum, type or size)", inode: ino)
                continue
            }
            modes[Int(ino)] = inode.mode
            nlinks[Int(ino)] = inode.nlink
            checkInode(ino, inode)
        }
        tick(1, UInt64(sb.inodeCount), of: UInt64(sb.inodeCount))
    }

    private func checkInode(_ ino: UInt32, _ inode: DiskInode) {
        let walk = walkBlocks(ino, inode, collectData: inode.isDirectory || inode.isSymlink)
        reportBlockMap(walk, inode)
        checkBlockCount(walk, inode)
        let bigfile = features.contains(.bigfile)
        if inode.size > (bigfile ? Layout.maxBigFileSize : Layout.maxFileSize) {
            error(.fileSize, "inode \(ino) has size \(inode.size), past the largest file "
                  + (bigfile ? "" : "without the bigfile feature"), inode: ino)
        }
        if inode.tripleIndirect != 0 && !bigfile {
            error(.blockAddress, "inode \(ino) has a triple-indirect block, but the image lacks the bigfile feature",
                  inode: ino, block: UInt64(inode.tripleIndirect))
        }
        checkXattrs(ino, inode)
        if walk.unwritten > 0 { featuresInUse.insert(.unwritten) }
        if walk.pastSize > 0 { featuresInUse.insert(.keepSize) }
        if inode.tripleIndirect != 0 || inode.size > Layout.maxFileSize { featuresInUse.insert(.bigfile) }
        if inode.xattrBlock != 0 { featuresInUse.insert(.xattr) }
        if inode.isDirectory {
            if inode.size % UInt64(Layout.blockSize) != 0 {
                error(.fileSize, "directory \(ino) has size \(inode.size), not a multiple of \(Layout.blockSize)", inode: ino)
            }
            shapes[ino] = DirectoryShape(size: inode.size, blocks: walk.data,
                                         incomplete: UInt64(walk.data.count) < walk.sizeBlocks)
        } else if inode.isSymlink {
            checkSymlink(walk, inode)
        }
    }

    private func reportBlockMap(_ walk: BlockWalk, _ inode: DiskInode) {
        let ino = walk.ino
        if let (address, place) = walk.firstBad {
            let gaveUp = walk.gaveUp ? "; gave up on its block map" : ""
            error(.blockAddress, "inode \(ino): \(walk.badAddresses) block address(es) outside the data area "
                  + "(first: \(address) as \(place))\(gaveUp)", inode: ino, block: UInt64(address))
        }
        if let address = walk.firstDuplicate {
            error(.duplicateBlock, "inode \(ino): \(walk.duplicates) block(s) also held elsewhere "
                  + "(first: block \(address))", inode: ino, block: UInt64(address))
        }
        if let (index, address) = walk.firstBeyond {
            error(.beyondSize, "inode \(ino): \(walk.beyondSize) block(s) mapped beyond its size of \(inode.size) bytes "
                  + "(first: block \(address) as file block \(index))", inode: ino, block: UInt64(address))
        }
        if walk.partial || walk.gaveUp { blockMapsDamaged = true }
    }

    /// blockCount must equal the blocks held. Only a fully known map gives
    /// the right count, and only a map without bad addresses is repaired.
    private func checkBlockCount(_ walk: BlockWalk, _ inode: DiskInode) {
        guard !walk.partial, !walk.gaveUp, walk.held != inode.blockCount else { return }
        let ino = walk.ino
        let held = walk.held
        let repaired = walk.badAddresses == 0 && repairInode(ino) { $0.blockCount = held }
        error(.blockCount, "inode \(ino): block count is \(inode.blockCount), but it holds \(held) block(s)",
              repaired: repaired, inode: ino)
    }

    /// A symlink keeps its target, 1 to 4095 bytes without NUL, in file block 0.
    private func checkSymlink(_ walk: BlockWalk, _ inode: DiskInode) {
        let ino = walk.ino
        guard inode.size > 0, inode.size <= UInt64(Layout.maxSymlinkLength) else {
            error(.fileSize, "symlink \(ino) has size \(inode.size); a target is 1 to \(Layout.maxSymlinkLength) bytes",
                  inode: ino)
            return
        }
        guard let first = walk.data.first, first.index == 0 else {
            error(.symlink, "symlink \(ino) has no block holding its target", inode: ino)
            return
        }
        guard let bytes = readBlock(UInt64(first.address), "target of symlink \(ino)") else { return }
        if bytes[0..<Int(inode.size)].contains(0) {
            error(.symlink, "symlink \(ino): its target holds a NUL byte", inode: ino)
        }
    }
}
