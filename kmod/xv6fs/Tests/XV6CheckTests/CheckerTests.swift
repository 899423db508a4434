import BentoKit
import BentoServices
import Testing
import XV6Check
import XV6Layout

/// Read-only and repair checks of one image.
func check(_ image: ImageBuilder) -> CheckReport { Checker(readOnly: true).check(image.device) }
func repair(_ image: ImageBuilder) -> CheckReport { Checker(readOnly: false).check(image.device) }

@Suite struct CleanImages {
    @Test func freshlyFormattedImageIsClean() {
        let image = ImageBuilder()
        let report = check(image)
        #expect(report.isClean, "\(report)")
        #expect(report.findings.isEmpty)
        #expect(report.exitCode == 0)
        #expect(report.directories == 1 && report.files == 0)
        #expect(report.usedBlocks == UInt64(image.sb.dataStart) + 1)
    }

    @Test func populatedImageIsClean() {
        let image = ImageBuilder()
        image.populate()
        let report = check(image)
        #expect(report.isClean, "\(report)")
        #expect(report.findings.isEmpty)
        #expect(report.directories == 3)
        #expect(report.files == 24)
    }

    @Test func repairModeLeavesACleanImageUntouched() {
        let image = ImageBuilder()
        image.populate()
        let before = image.device.snapshot()
        let report = repair(image)
        #expect(report.isClean, "\(report)")
        #expect(image.device.snapshot() == before)
    }

    @Test func smallestAndDefaultSizedImagesAreClean() {
        for blocks: UInt64 in [128, 130, 40_000] {
            let report = check(ImageBuilder(blocks: blocks))
            #expect(report.isClean, "\(blocks) blocks: \(report)")
        }
    }
}

@Suite struct Superblocks {
    @Test func corruptedSuperblockIsAnOperationalError() {
        let image = ImageBuilder()
        image.edit(Layout.superblockNumber) { $0[20] ^= 0x40 }  // inside totalBlocks: checksum fails
        let report = check(image)
        #expect(report.operationalError?.contains("checksum") == true, "\(report)")
        #expect(report.exitCode == 8)
        #expect(report.findings.isEmpty)
    }

    @Test func zeroedSuperblockIsNotAnXv6Image() {
        let image = ImageBuilder()
        image.write(Layout.superblockNumber, [UInt8](repeating: 0, count: Layout.blockSize))
        let report = repair(image)
        #expect(report.operationalError?.contains("not an xv6 image") == true, "\(report)")
        #expect(report.exitCode == 8)
    }

    @Test func superblockLargerThanTheDeviceIsAnOperationalError() {
        let image = ImageBuilder(blocks: 200)
        let small = MemoryBlockDevice(image: Array(image.device.snapshot()[0..<(100 * Layout.blockSize)]))
        let report = Checker().check(small)
        #expect(report.exitCode == 8, "\(report)")
    }

    @Test func absurdInodeCountDoesNotTrap() {
        let image = ImageBuilder()
        var sb = image.sb
        sb.inodeCount = .max
        image.edit(Layout.superblockNumber) { sb.encode(into: $0) }
        #expect(check(image).exitCode == 8)
    }

    @Test func tinyDeviceIsAnOperationalError() {
        #expect(Checker().check(MemoryBlockDevice(blockCount: 1)).exitCode == 8)
    }
}

@Suite struct Bitmap {
    @Test func usedBlockMarkedFreeIsReportedAndRepaired() {
        let image = ImageBuilder()
        image.populate()
        let rootBlock = UInt64(image.inode(Layout.rootInode).direct[0])
        image.setUsed(rootBlock, false)
        let report = check(image)
        #expect(report.findings(.bitmapMissing).map(\.block) == [rootBlock], "\(report)")
        #expect(report.errors.count == 1)
        #expect(report.exitCode == 4)

        let repaired = repair(image)
        #expect(repaired.findings(.bitmapMissing).first?.repaired == true)
        #expect(repaired.exitCode == 1)
        #expect(image.isUsed(rootBlock))
        #expect(check(image).isClean)
    }

    @Test func metadataBlockMarkedFreeIsReported() {
        let image = ImageBuilder()
        image.setUsed(UInt64(image.sb.inodeStart), false)
        #expect(check(image).findings(.bitmapMissing).first?.block == UInt64(image.sb.inodeStart))
    }

    @Test func unusedBlocksMarkedUsedAreLeakedAndFreed() {
        let image = ImageBuilder()
        image.populate()
        let leaked = image.sb.totalBlocks - 10
        for block in leaked..<(leaked + 3) { image.setUsed(block, true) }
        let report = check(image)
        let leaks = report.findings(.bitmapLeak)
        #expect(leaks.count == 1, "\(report)")
        #expect(leaks.first?.block == leaked)
        #expect(leaks.first?.message.contains("\(leaked)-\(leaked + 2)") == true)

        let repaired = repair(image)
        #expect(repaired.findings(.bitmapLeak).first?.repaired == true)
        #expect(!image.isUsed(leaked))
        #expect(check(image).isClean)
    }
}

@Suite struct Inodes {
    @Test func wrongRootLinkCountIsReportedAndRepaired() {
        let image = ImageBuilder()
        image.populate()
        image.changeInode(Layout.rootInode) { $0.nlink = 7 }
        let report = check(image)
        let finding = report.findings(.linkCount).first
        #expect(finding?.inode == Layout.rootInode, "\(report)")
        #expect(finding?.message.contains("should be 3") == true)
        #expect(report.errors.count == 1)

        #expect(repair(image).exitCode == 1)
        #expect(image.inode(Layout.rootInode).nlink == 3)
        #expect(check(image).isClean)
    }

    @Test func wrongFileLinkCountIsRepaired() {
        let image = ImageBuilder()
        let file = image.addFile("a", bytes: 10)
        image.link("b", to: file)
        image.changeInode(file) { $0.nlink = 0 }
        #expect(check(image).findings(.linkCount).first?.inode == file)
        #expect(repair(image).exitCode == 1)
        #expect(image.inode(file).nlink == 2)
        #expect(check(image).isClean)
    }

    @Test func outOfRangeBlockAddressIsReported() {
        let image = ImageBuilder()
        image.populate()
        let file = image.addFile("victim", bytes: 3 * Layout.blockSize)
        image.changeInode(file) { $0.direct[1] = UInt32(image.sb.totalBlocks + 5) }
        let report = check(image)
        let finding = report.findings(.blockAddress).first
        #expect(finding?.inode == file, "\(report)")
        #expect(finding?.block == image.sb.totalBlocks + 5)
        // The block it lost is now held by nothing.
        #expect(report.has(.bitmapLeak))
        #expect(report.exitCode == 4)
    }

    @Test func addressInsideTheInodeTableIsReported() {
        let image = ImageBuilder()
        let file = image.addFile("victim", bytes: 10)
        image.changeInode(file) { $0.indirect = image.sb.inodeStart }
        let report = check(image)
        #expect(report.findings(.blockAddress).first?.inode == file, "\(report)")
    }

    @Test func corruptInodeChecksumIsReported() {
        let image = ImageBuilder()
        let file = image.addFile("victim", bytes: 10)
        let (block, offset) = image.sb.inodeLocation(file)
        image.edit(block) { $0[offset + 17] ^= 1 }
        let report = check(image)
        #expect(report.findings(.inodeCorrupt).first?.inode == file, "\(report)")
        // Its block is not known to be free: the leak is reported, not freed.
        let repaired = repair(image)
        #expect(repaired.findings(.bitmapLeak).first?.repaired == false, "\(repaired)")
    }

    @Test func wrongBlockCountIsRepaired() {
        let image = ImageBuilder()
        let file = image.addFile("big", bytes: 40 * Layout.blockSize)
        #expect(image.inode(file).blockCount == 41)
        image.changeInode(file) { $0.blockCount = 3 }
        let report = check(image)
        #expect(report.findings(.blockCount).first?.message.contains("holds 41") == true, "\(report)")
        #expect(repair(image).exitCode == 1)
        #expect(image.inode(file).blockCount == 41)
        #expect(check(image).isClean)
    }

    @Test func blockSharedByTwoFilesIsReported() {
        let image = ImageBuilder()
        let a = image.addFile("a", bytes: 10)
        let b = image.addFile("b", bytes: 10)
        let shared = image.inode(a).direct[0]
        let lost = image.inode(b).direct[0]
        image.changeInode(b) { $0.direct[0] = shared }
        let report = check(image)
        #expect(report.findings(.duplicateBlock).first?.inode == b, "\(report)")
        #expect(report.findings(.bitmapLeak).first?.block == UInt64(lost))
    }

    @Test func blockBeyondTheSizeIsReported() {
        let image = ImageBuilder()
        let file = image.addFile("a", bytes: 2 * Layout.blockSize)
        image.changeInode(file) { $0.size = 100 }
        let report = check(image)
        #expect(report.findings(.beyondSize).first?.inode == file, "\(report)")
    }

    @Test func orphanInodeIsReported() {
        let image = ImageBuilder()
        image.populate()
        let orphan = image.allocateInode()
        var node = DiskInode()
        node.mode = FileMode.regular | 0o600
        node.nlink = 1
        node.generation = 1
        image.setInode(orphan, node)
        let report = check(image)
        let finding = report.findings(.orphan).first
        #expect(finding?.inode == orphan, "\(report)")
        #expect(report.errors.count == 1)
        #expect(report.exitCode == 4)
        // Orphans are left alone.
        #expect(repair(image).exitCode == 4)
        #expect(!image.inode(orphan).isFree)
    }

    @Test func unlinkedOpenFileLeftByACrashIsAnInfoOrphan() {
        let image = ImageBuilder()
        let file = image.addFile("tmp", bytes: 5000)
        // Unlink it by hand: the entry goes, the inode stays with nlink 0.
        let rootBlock = UInt64(image.inode(Layout.rootInode).direct[0])
        image.edit(rootBlock) { $0.set(12 + 4, UInt16(Layout.blockSize - 12)) }
        image.changeInode(file) { $0.nlink = 0 }
        let report = check(image)
        let finding = report.findings(.orphan).first
        #expect(finding?.inode == file, "\(report)")
        #expect(finding?.message.contains("unlinked") == true)
        #expect(finding?.severity == .info)
        #expect(report.isClean)
        #expect(!report.has(.linkCount))
        #expect(!report.has(.bitmapLeak))
    }
}

@Suite struct Directories {
    @Test func badRecordLengthIsReported() {
        let image = ImageBuilder()
        image.populate()
        let rootBlock = UInt64(image.inode(Layout.rootInode).direct[0])
        image.edit(rootBlock) { $0.set(12 + 4, UInt16(6)) }  // ".." record: shorter than a header
        let report = check(image)
        let finding = report.findings(.directoryRecord).first
        #expect(finding?.inode == Layout.rootInode, "\(report)")
        #expect(finding?.block == rootBlock)
        #expect(report.exitCode == 4)
    }

    @Test func recordRunningPastTheBlockIsReported() {
        let image = ImageBuilder()
        let rootBlock = UInt64(image.inode(Layout.rootInode).direct[0])
        image.edit(rootBlock) { $0.set(12 + 4, UInt16(Layout.blockSize)) }
        #expect(check(image).has(.directoryRecord))
    }

    @Test func entryNamingAFreeInodeIsReported() {
        let image = ImageBuilder()
        let file = image.addFile("gone", bytes: 10)
        let block = image.inode(file).direct[0]
        image.setInode(file, DiskInode())
        image.setUsed(UInt64(block), false)
        let report = check(image)
        #expect(report.findings(.danglingEntry).first?.message.contains("\"gone\"") == true, "\(report)")
        #expect(report.errors.count == 1)
    }

    @Test func duplicateAndBadNamesAreReported() {
        let image = ImageBuilder()
        let file = image.addFile("same", bytes: 10)
        image.link("same", to: file)
        image.link("a/b", to: file)
        let report = check(image)
        #expect(report.has(.duplicateName), "\(report)")
        #expect(report.has(.badName))
        #expect(!report.has(.linkCount))
    }

    @Test func wrongDotDotIsReported() {
        let image = ImageBuilder()
        let a = image.mkdir("a")
        let b = image.mkdir("b")
        let block = UInt64(image.inode(b).direct[0])
        image.edit(block) { $0.set(12, a) }
        let report = check(image)
        #expect(report.findings(.dotEntry).first?.inode == b, "\(report)")
    }

    @Test func directoryWithTwoNamesIsReported() {
        let image = ImageBuilder()
        let a = image.mkdir("a")
        let b = image.mkdir("b")
        image.addEntry(Array("again".utf8), in: b, ino: a)
        image.changeInode(b) { $0.nlink += 1 }
        let report = check(image)
        #expect(report.findings(.directoryLinks).first?.inode == a, "\(report)")
    }

    @Test func detachedDirectoryCycleIsReported() {
        let image = ImageBuilder()
        let a = image.mkdir("a")
        let b = image.mkdir("b", in: a)
        // Cut "a" out of the root, and let b name a: a -> b -> a.
        let rootBlock = UInt64(image.inode(Layout.rootInode).direct[0])
        image.edit(rootBlock) { $0.set(12 + 4, UInt16(Layout.blockSize - 12)) }
        image.changeInode(Layout.rootInode) { $0.nlink = 2 }
        image.addEntry(Array("loop".utf8), in: b, ino: a)
        image.changeInode(b) { $0.nlink += 1 }
        let report = check(image)
        #expect(report.has(.directoryCycle), "\(report)")
        #expect(!report.has(.orphan) || report.findings(.orphan).allSatisfy { $0.severity == .info })
    }

    @Test func rootThatIsNotADirectoryIsReported() {
        let image = ImageBuilder()
        image.changeInode(Layout.rootInode) { $0.mode = FileMode.regular | 0o644 }
        let report = check(image)
        #expect(report.has(.rootDirectory), "\(report)")
    }
}

@Suite struct Repairs {
    @Test func repairFixesEverythingItCanThenTheImageIsClean() {
        let image = ImageBuilder()
        image.populate()
        let file = image.addFile("extra", bytes: 3 * Layout.blockSize)
        image.setUsed(UInt64(image.inode(file).direct[2]), false)
        image.setUsed(image.sb.totalBlocks - 1, true)
        image.changeInode(Layout.rootInode) { $0.nlink = 1 }
        image.changeInode(file) { $0.nlink = 9; $0.blockCount = 1 }

        let report = check(image)
        #expect(Set(report.errors.map(\.kind)) == [.bitmapMissing, .bitmapLeak, .linkCount, .blockCount], "\(report)")
        #expect(report.exitCode == 4)

        let repaired = repair(image)
        #expect(repaired.errorsCorrected == 5, "\(repaired)")
        #expect(repaired.errorsLeft == 0)
        #expect(repaired.exitCode == 1)
        #expect(repaired.errors.allSatisfy { $0.repaired })

        let again = check(image)
        #expect(again.isClean, "\(again)")
        #expect(again.findings.isEmpty)
    }

    @Test func findingsOfOneKindAreCapped() {
        let image = ImageBuilder(blocks: 2000)
        // Leak every other block: many separate ranges.
        for block in stride(from: image.sb.totalBlocks - 400, to: image.sb.totalBlocks, by: 2) {
            image.setUsed(block, true)
        }
        let report = Checker(readOnly: true, maxFindingsPerKind: 10).check(image.device)
        #expect(report.findings(.bitmapLeak).count == 10)
        #expect(report.errorsLeft == 200)
        #expect(report.findings(.omitted).first?.message.contains("190") == true, "\(report)")
    }
}
