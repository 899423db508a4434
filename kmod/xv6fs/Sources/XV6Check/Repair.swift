import BentoKit
import XV6Layout

/// Writing repairs to the device.
extension CheckRun {
    /// Writes a repaired block; false in read-only mode or on failure.
    func repairBlock(_ block: UInt64, _ bytes: [UInt8]) -> Bool {
        guard !readOnly, retireInstalledLog() else { return false }
        guard reader.write(block, bytes) else {
            error(.io, "cannot write block \(block) while repairing", block: block)
            return false
        }
        unflushed = true
        return true
    }

    /// Rewrites inode `ino` with `change` applied; false if not done.
    func repairInode(_ ino: UInt32, _ change: (inout DiskInode) -> Void) -> Bool {
        guard !readOnly else { return false }
        let (block, offset) = sb.inodeLocation(ino)
        guard var bytes = readBlock(block, "inode table") else { return false }
        let slot = offset..<(offset + Layout.inodeSize)
        let decoded = bytes.withUnsafeBytes { buffer in
            try? DiskInode.decode(ino: ino, UnsafeRawBufferPointer(rebasing: buffer[slot]))
        }
        guard var inode = decoded else { return false }
        change(&inode)
        bytes.withUnsafeMutableBytes { buffer in
            inode.encode(ino: ino, into: UnsafeMutableRawBufferPointer(rebasing: buffer[slot]))
        }
        return repairBlock(block, bytes)
    }

    /// Clears a committed header whose transaction is already at home, so a
    /// later mount cannot replay stale blocks over our repairs. Done once,
    /// before the first repair; false if that failed (then repair nothing).
    func retireInstalledLog() -> Bool {
        guard let header = installedLogHeader else { return true }
        installedLogHeader = nil
        return writeEmptyLogHeader(sequence: header.sequence)
    }

    /// Writes a header with no blocks (keeping the sequence) and flushes.
    func writeEmptyLogHeader(sequence: UInt64) -> Bool {
        let empty = LogHeader(sequence: sequence, blocks: [], checksum: LogHeader.seed(sequence: sequence, blocks: []))
        var bytes = [UInt8](repeating: 0, count: Layout.blockSize)
        bytes.withUnsafeMutableBytes { empty.encode(into: $0) }
        guard reader.write(UInt64(sb.logStart), bytes), reader.flush() else {
            error(.io, "cannot clear the log header at block \(sb.logStart)", block: UInt64(sb.logStart))
            return false
        }
        return true
    }
}
