import BentoKit
import XV6Layout

/// An inode's extended attributes (feature `xattr`): its attribute block
/// and the blocks of its large values are claimed, so that the bitmap
/// check counts them in use, and the attribute block must decode.
extension CheckRun {
    func checkXattrs(_ ino: UInt32, _ inode: DiskInode) {
        let block = inode.xattrBlock
        guard block != 0 else { return }
        if !sb.features.contains(.xattr) && !pendingFeatures.contains(.xattr) {
            error(.xattr, "inode \(ino) has an attribute block, but the image does not use the xattr feature",
                  inode: ino, block: UInt64(block))
        }
        guard claim(block, ino, "attribute block") else { return }
        guard let bytes = readBlock(UInt64(block), "attribute block of inode \(ino)") else {
            blockMapsDamaged = true
            return
        }
        guard let entries = bytes.withUnsafeBytes({ XattrBlock.decode($0, owner: ino) }) else {
            // Its values' blocks are unknown: they may look leaked.
            blockMapsDamaged = true
            error(.xattr, "inode \(ino): attribute block \(block) is corrupt", inode: ino, block: UInt64(block))
            return
        }
        for entry in entries {
            for address in entry.blocks { _ = claim(address, ino, "attribute value block") }
        }
    }

    /// The features as the image will have them after the log's replay:
    /// the transaction that first used a feature also set its bit.
    private var pendingFeatures: FeatureSet {
        let block = reader.read(Layout.superblockNumber)
        return block.flatMap { bytes in bytes.withUnsafeBytes { try? Superblock.decode($0, deviceBlocks: sb.totalBlocks) } }?
            .features ?? sb.features
    }

    /// Claims one attribute block; false (reported) if it is out of range
    /// or held elsewhere already.
    private func claim(_ address: UInt32, _ ino: UInt32, _ what: String) -> Bool {
        guard sb.isDataBlock(address) else {
            blockMapsDamaged = true
            error(.blockAddress, "inode \(ino): \(what) \(address) is outside the data area", inode: ino,
                  block: UInt64(address))
            return false
        }
        guard claimed.insert(UInt64(address)) else {
            error(.duplicateBlock, "inode \(ino): \(what) \(address) is also held elsewhere", inode: ino,
                  block: UInt64(address))
            return false
        }
        return true
    }
}
