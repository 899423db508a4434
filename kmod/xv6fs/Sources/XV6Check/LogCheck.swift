import BentoKit
import XV6Layout

/// The log: a committed transaction not yet installed is normal after a
/// crash. Read-only, the rest of the check sees it laid over the image;
/// otherwise it is replayed onto the device first, as a mount would.
extension CheckRun {
    func checkLog() {
        let headerBlock = UInt64(sb.logStart)
        guard let raw = readBlock(headerBlock, "log header") else { return }
        let decoded = raw.withUnsafeBytes { LogHeader.decode($0, capacity: Int(sb.logBlocks)) }
        guard let header = decoded else {
            if raw.u32(0) == LogHeader.magic {
                info(.log, "log header names \(raw.u32(4)) blocks, more than the log holds: ignored, as a mount would",
                     block: headerBlock)
            }
            return
        }
        guard !header.blocks.isEmpty else { return }

        // Committed means the checksum over header and log contents holds.
        var sum = LogHeader.seed(sequence: header.sequence, blocks: header.blocks)
        var logged: [[UInt8]] = []
        for i in 0..<header.blocks.count {
            guard let bytes = readBlock(headerBlock + 1 + UInt64(i), "log") else { return }
            sum = bytes.withUnsafeBytes { Checksum.combine(sum, $0) }
            logged.append(bytes)
        }
        guard sum == header.checksum else {
            info(.log, "log holds an uncommitted transaction (sequence \(header.sequence), checksum mismatch): "
                 + "ignored, as a mount would", block: headerBlock)
            return
        }

        // Replay may only touch the superblock, the inode table, the bitmap and data blocks.
        if let bad = header.blocks.first(where: { !sb.mayBeLogged(UInt64($0)) }) {
            error(.log, "committed log transaction \(header.sequence) names home block \(bad), outside the "
                  + "superblock, inode table, bitmap and data area: not replayed", block: headerBlock)
            return
        }
        // A logged superblock (a feature's first use) may change its features only.
        if let at = header.blocks.firstIndex(of: UInt32(Layout.superblockNumber)) {
            var superblock = logged[at].withUnsafeBytes { try? Superblock.decode($0, deviceBlocks: sb.totalBlocks) }
            superblock?.features = sb.features
            guard superblock == sb else {
                error(.log, "committed log transaction \(header.sequence) holds a superblock that is not this "
                      + "file system's: not replayed", block: headerBlock)
                return
            }
        }

        var overlay: [UInt64: [UInt8]] = [:]
        for (home, bytes) in zip(header.blocks, logged) { overlay[UInt64(home)] = bytes }
        let pending = overlay.contains { home, bytes in reader.readDevice(home) != bytes }
        guard pending else {
            installedLogHeader = header
            return
        }

        let what = "committed log transaction \(header.sequence) (\(header.blocks.count) blocks) not yet installed"
        if readOnly {
            reader.overlay = overlay
            info(.log, "\(what): checked as it will be after replay", block: headerBlock)
        } else if replay(header.blocks, logged) && writeEmptyLogHeader(sequence: header.sequence) {
            info(.log, "\(what): replayed", repaired: true, block: headerBlock)
        } else {
            reader.overlay = overlay  // check what the image should have become
            error(.log, "\(what): replay failed", block: headerBlock)
        }
    }

    /// Copies log block i to home block i, in order, and makes it durable.
    private func replay(_ homes: [UInt32], _ logged: [[UInt8]]) -> Bool {
        for (home, bytes) in zip(homes, logged) where !reader.write(UInt64(home), bytes) {
            error(.io, "cannot write block \(home) while replaying the log", block: UInt64(home))
            return false
        }
        return reader.flush()
    }
}
