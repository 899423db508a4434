import BentoKit
import BentoServices
import Testing
import XV6Check
import XV6Layout

/// Pending log transactions: built by making a change on a copy of an image
/// and logging every block that differs, as the file system would.
@Suite struct LogReplay {
    /// The image before the change (with the transaction in its log) and after.
    func pendingTransaction(sequence: UInt64 = 7) -> (before: ImageBuilder, after: ImageBuilder, homes: [UInt32]) {
        let before = ImageBuilder()
        before.populate()
        let after = ImageBuilder(copying: before)
        let dir = after.mkdir("new-dir")
        after.addFile("new-file", in: dir, bytes: 3 * Layout.blockSize + 1)
        let homes = (0..<before.sb.totalBlocks).filter { before.read($0) != after.read($0) }.map { UInt32($0) }
        writeLog(into: before, sequence: sequence, homes: homes, contents: homes.map { after.read(UInt64($0)) })
        return (before, after, homes)
    }

    func writeLog(into image: ImageBuilder, sequence: UInt64, homes: [UInt32], contents: [[UInt8]]) {
        let logStart = UInt64(image.sb.logStart)
        var sum = LogHeader.seed(sequence: sequence, blocks: homes)
        for (i, bytes) in contents.enumerated() {
            image.write(logStart + 1 + UInt64(i), bytes)
            sum = bytes.withUnsafeBytes { Checksum.combine(sum, $0) }
        }
        image.edit(logStart) { LogHeader(sequence: sequence, blocks: homes, checksum: sum).encode(into: $0) }
    }

    @Test func readOnlyCheckSeesTheImageAsAfterReplay() {
        let (before, _, homes) = pendingTransaction()
        #expect(homes.count >= 4)
        let snapshot = before.device.snapshot()
        let report = check(before)
        #expect(report.isClean, "\(report)")
        #expect(report.exitCode == 0)
        let log = report.findings(.log)
        #expect(log.count == 1)
        #expect(log.first?.severity == .info)
        #expect(log.first?.repaired == false)
        #expect(report.directories == 4)  // root, docs, deep and the logged new-dir
        #expect(before.device.snapshot() == snapshot)
    }

    @Test func repairReplaysTheTransaction() {
        let (before, after, homes) = pendingTransaction()
        let report = repair(before)
        #expect(report.findings(.log).first?.repaired == true, "\(report)")
        #expect(report.exitCode == 0)
        for home in homes { #expect(before.read(UInt64(home)) == after.read(UInt64(home))) }
        // The header is retired: nothing is pending any more.
        let header = before.read(UInt64(before.sb.logStart)).withUnsafeBytes {
            LogHeader.decode($0, capacity: Int(before.sb.logBlocks))
        }
        #expect(header?.blocks.isEmpty == true)
        let again = check(before)
        #expect(again.isClean && again.findings.isEmpty, "\(again)")
        #expect(again.directories == 4)
    }

    @Test func installedTransactionIsNotReported() {
        let (before, _, _) = pendingTransaction()
        _ = repair(before)
        // Put the old header back: its blocks are all at home already.
        let (other, _, _) = pendingTransaction()
        before.write(UInt64(before.sb.logStart), other.read(UInt64(other.sb.logStart)))
        let snapshot = before.device.snapshot()
        let report = repair(before)
        #expect(report.findings.isEmpty, "\(report)")
        #expect(before.device.snapshot() == snapshot)
    }

    @Test func installedTransactionIsRetiredBeforeARepair() {
        // An installed transaction over a file's data block, and damage elsewhere.
        let image = ImageBuilder()
        let file = image.addFile("data", bytes: 100)
        let home = image.inode(file).direct[0]
        writeLog(into: image, sequence: 9, homes: [home], contents: [image.read(UInt64(home))])
        image.changeInode(Layout.rootInode) { $0.nlink = 50 }
        #expect(check(image).findings(.log).isEmpty)
        #expect(repair(image).exitCode == 1)
        // Cleared, so a mount cannot replay it over the repairs.
        let decoded = image.read(UInt64(image.sb.logStart)).withUnsafeBytes {
            LogHeader.decode($0, capacity: Int(image.sb.logBlocks))
        }
        #expect(decoded?.blocks.isEmpty == true)
        #expect(decoded?.sequence == 9)
        #expect(check(image).isClean)
    }

    @Test func damageInsideAPendingTransactionIsReplayedAway() {
        let (before, _, _) = pendingTransaction()
        // The root inode block is in the transaction: the log's copy wins.
        before.changeInode(Layout.rootInode) { $0.nlink = 50 }
        #expect(check(before).isClean)
        #expect(repair(before).exitCode == 0)
        #expect(check(before).isClean)
    }

    @Test func uncommittedTransactionIsIgnored() {
        let (before, _, _) = pendingTransaction()
        before.edit(UInt64(before.sb.logStart) + 2) { $0[100] ^= 0xFF }  // checksum no longer holds
        let snapshot = before.device.snapshot()
        let report = repair(before)
        #expect(report.isClean, "\(report)")
        #expect(report.findings(.log).first?.message.contains("uncommitted") == true)
        #expect(report.directories == 3)
        #expect(before.device.snapshot() == snapshot)
    }

    @Test func transactionAimedOutsideTheFileSystemAreasIsAnError() {
        let image = ImageBuilder()
        writeLog(into: image, sequence: 1, homes: [1], contents: [[UInt8](repeating: 0, count: Layout.blockSize)])
        let report = repair(image)
        #expect(report.findings(.log).first?.severity == .error, "\(report)")
        #expect(report.exitCode == 4)
        #expect(check(image).operationalError == nil)  // the superblock was not overwritten
    }

    @Test func replayedTransactionThatBreaksTheImageIsChecked() {
        // A committed transaction whose contents leave a link count wrong:
        // read-only reports it, repair replays and then fixes it.
        let image = ImageBuilder()
        let (block, _) = image.sb.inodeLocation(Layout.rootInode)
        let after = ImageBuilder(copying: image)
        after.changeInode(Layout.rootInode) { $0.nlink = 9 }
        writeLog(into: image, sequence: 3, homes: [UInt32(block)], contents: [after.read(block)])
        #expect(check(image).has(.linkCount))
        let report = repair(image)
        #expect(report.findings(.log).first?.repaired == true)
        #expect(report.findings(.linkCount).first?.repaired == true, "\(report)")
        #expect(check(image).isClean)
    }
}

/// The commit hashes each block while it copies it: that must be the
/// checksum recovery and fsck compute.
@Suite struct ChecksumCopying {
    @Test(arguments: [0, 1, 7, 8, 13, 4096, 4099])
    func agreesWithTheHashAndCopiesExactly(length: Int) {
        var seed: UInt64 = 0x1234_5678_9ABC_DEF0
        let bytes = (0..<length).map { _ -> UInt8 in
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: seed >> 56)
        }
        var copy = [UInt8](repeating: 0xA5, count: length + 1)
        let (plain, copying) = bytes.withUnsafeBytes { source in
            copy.withUnsafeMutableBytes { target in
                (Checksum.combine(99, source), Checksum.combine(99, copying: source, to: target.baseAddress!))
            }
        }
        #expect(plain == copying)
        #expect(Array(copy[0..<length]) == bytes)
        #expect(copy[length] == 0xA5)
    }
}
