import BentoKit
import XV6Layout

/// What following one inode's block map found.
struct BlockWalk {
    let ino: UInt32
    /// The file's size rounded up to blocks: file blocks below it may be mapped.
    let sizeBlocks: UInt64
    /// Keep the data blocks within the size (directories, symlinks).
    let collectData: Bool

    /// Nonzero addresses met: data and indirect blocks, as blockCount counts them.
    var held: UInt64 = 0
    var data: [(index: UInt64, address: UInt32)] = []

    var badAddresses = 0
    var firstBad: (address: UInt32, place: String)?
    /// An indirect block address was bad, unreadable or shared: its
    /// addresses were not followed, so the map is known only in part.
    var partial = false
    var duplicates = 0
    var firstDuplicate: UInt32?
    var beyondSize = 0
    var firstBeyond: (index: UInt64, address: UInt32)?
    /// What the map uses of the features (`fsck.xv6 --downgrade` asks):
    /// data addresses with the unwritten mark, blocks past the size.
    var unwritten = 0
    var pastSize = 0

    /// Past this many bad addresses the map is garbage: stop following it.
    static let badAddressLimit = 64
    var gaveUp: Bool { badAddresses > Self.badAddressLimit }

    mutating func noteBad(_ address: UInt32, _ place: String) {
        badAddresses += 1
        if firstBad == nil { firstBad = (address, place) }
    }

    mutating func noteDuplicate(_ address: UInt32) {
        duplicates += 1
        if firstDuplicate == nil { firstDuplicate = address }
    }
}

/// Following block maps: 38 direct addresses, one indirect block, one
/// double-indirect block and (`bigfile`) one triple-indirect block. Each
/// block is claimed once; a block claimed again is a duplicate and, if it
/// is an indirect block, not followed again. So the whole walk reads each
/// block at most once, however corrupt the maps. With `unwritten`, a data
/// address may carry the unwritten mark; with `keep_size`, blocks may lie
/// past the size.
extension CheckRun {
    func walkBlocks(_ ino: UInt32, _ inode: DiskInode, collectData: Bool) -> BlockWalk {
        let blockSize = UInt64(Layout.blockSize)
        var walk = BlockWalk(ino: ino, sizeBlocks: (inode.size + blockSize - 1) / blockSize, collectData: collectData)
        for (i, address) in inode.direct.enumerated() where address != 0 && !walk.gaveUp {
            visitData(address, at: UInt64(i), &walk)
        }
        let perBlock = UInt64(Layout.addressesPerBlock)
        let indirectBase = UInt64(Layout.directCount)
        let doubleBase = indirectBase + perBlock
        let tripleBase = doubleBase + perBlock * perBlock
        if inode.indirect != 0, let table = openIndirect(inode.indirect, "indirect block", &walk) {
            visitTree(table, base: indirectBase, depth: 0, &walk)
        }
        if inode.doubleIndirect != 0, let top = openIndirect(inode.doubleIndirect, "double-indirect block", &walk) {
            visitTree(top, base: doubleBase, depth: 1, &walk)
        }
        if inode.tripleIndirect != 0, let top = openIndirect(inode.tripleIndirect, "triple-indirect block", &walk) {
            visitTree(top, base: tripleBase, depth: 2, &walk)
        }
        return walk
    }

    /// A table `depth` levels above the data (0: its entries are data).
    private func visitTree(_ table: [UInt8], base: UInt64, depth: Int, _ walk: inout BlockWalk) {
        var span: UInt64 = 1
        for _ in 0..<depth { span *= UInt64(Layout.addressesPerBlock) }
        for k in 0..<Layout.addressesPerBlock where !walk.gaveUp {
            let address = table.u32(4 * k)
            guard address != 0 else { continue }
            let start = base + UInt64(k) * span
            if depth == 0 {
                visitData(address, at: start, &walk)
            } else if let child = openIndirect(address, depth == 1 ? "indirect block" : "double-indirect block", &walk) {
                visitTree(child, base: start, depth: depth - 1, &walk)
            }
        }
    }

    private func visitData(_ raw: UInt32, at index: UInt64, _ walk: inout BlockWalk) {
        walk.held += 1
        let unwritten = features.contains(.unwritten) && raw & Layout.unwrittenMark != 0
        let address = unwritten ? raw & ~Layout.unwrittenMark : raw
        guard sb.isDataBlock(address) else {
            walk.noteBad(raw, "file block \(index)")
            return
        }
        if unwritten { walk.unwritten += 1 }
        if index >= walk.sizeBlocks { walk.pastSize += 1 }
        if index >= walk.sizeBlocks && !features.contains(.keepSize) {
            walk.beyondSize += 1
            if walk.firstBeyond == nil { walk.firstBeyond = (index, address) }
        }
        if !claimed.insert(UInt64(address)) { walk.noteDuplicate(address) }
        // An unwritten block reads as zeroes: its contents are not the file's.
        if walk.collectData && index < walk.sizeBlocks && !unwritten { walk.data.append((index, address)) }
    }

    /// Claims an indirect block and reads it; nil if it must not be followed.
    private func openIndirect(_ address: UInt32, _ what: String, _ walk: inout BlockWalk) -> [UInt8]? {
        walk.held += 1
        guard sb.isDataBlock(address) else {
            walk.noteBad(address, what)
            walk.partial = true
            return nil
        }
        guard claimed.insert(UInt64(address)) else {
            walk.noteDuplicate(address)
            walk.partial = true
            return nil
        }
        guard let table = readBlock(UInt64(address), "\(what) of inode \(walk.ino)") else {
            walk.partial = true
            return nil
        }
        return table
    }
}
