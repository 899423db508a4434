import BentoKit
import Testing
import XV6Check
import XV6Layout

@Suite struct PreenDecisions {
    @Test func countsAndBitmapBitsArePreened() {
        let image = ImageBuilder()
        image.populate()
        let file = image.addFile("extra", bytes: 3 * Layout.blockSize)
        image.setUsed(UInt64(image.inode(file).direct[2]), false)
        image.setUsed(image.sb.totalBlocks - 1, true)
        image.changeInode(file) { $0.nlink = 9; $0.blockCount = 1 }
        let report = check(image)
        #expect(report.errorKinds == [.bitmapMissing, .bitmapLeak, .linkCount, .blockCount], "\(report)")
        #expect(Preen.needsPerson(report).isEmpty)
    }

    @Test func damagedDirectoriesWaitForAPerson() {
        let image = ImageBuilder()
        image.populate()
        let rootBlock = UInt64(image.inode(Layout.rootInode).direct[0])
        image.edit(rootBlock) { $0.set(12 + 4, UInt16(6)) }
        image.changeInode(Layout.rootInode) { $0.nlink = 7 }
        let report = check(image)
        #expect(Preen.needsPerson(report).contains(.directoryRecord), "\(report)")
        #expect(!Preen.needsPerson(report).contains(.linkCount))
    }

    @Test func errorKindsCountFindingsLeftOutOfTheList() {
        let image = ImageBuilder()
        for name in ["a", "b", "c"] { image.changeInode(image.addFile(name, bytes: 10)) { $0.nlink = 5 } }
        let report = Checker(readOnly: true, maxFindingsPerKind: 1).check(image.device)
        #expect(report.findings(.linkCount).count == 1)
        #expect(report.errorsLeft == 3)
        #expect(report.errorKinds == [.linkCount])
    }
}

/// Collects progress reports (the checker calls from one thread).
final class ProgressLog: @unchecked Sendable {
    var reports: [CheckProgress] = []
}

@Suite struct Progress {
    @Test func passesRunInOrderAndEachEndsComplete() {
        let image = ImageBuilder()
        image.populate()
        let log = ProgressLog()
        var checker = Checker(readOnly: true)
        checker.progress = { log.reports.append($0) }
        _ = checker.check(image.device)
        let passes = log.reports.map(\.pass)
        #expect(passes == passes.sorted())
        #expect(Set(passes) == Set(1...CheckProgress.passes))
        for pass in 1...CheckProgress.passes {
            let last = log.reports.last { $0.pass == pass }
            #expect(last.map { $0.current == $0.total } == true, "pass \(pass)")
        }
        let fractions = log.reports.map(\.fraction)
        #expect(fractions == fractions.sorted())
        #expect(fractions.last == 1)
    }
}
