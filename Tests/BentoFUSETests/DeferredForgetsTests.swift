@testable import BentoFUSE
import Testing

@Suite struct DeferredForgetsTests {
    @Test func keepsUpToItsLimitAndGivesThemBackInOrder() {
        let kept = DeferredForgets()
        #expect(kept.isEmpty)
        for ino in 1...UInt64(DeferredForgets.limit) { #expect(kept.keep(ino, ino * 10)) }
        #expect(!kept.keep(999, 1), "full: the caller runs it at once")
        #expect(!kept.isEmpty)
        for ino in 1...UInt64(DeferredForgets.limit) {
            let forget = kept.take()
            #expect(forget?.ino == ino && forget?.count == ino * 10)
        }
        #expect(kept.take() == nil)
        #expect(kept.isEmpty)
        #expect(kept.keep(7, 1), "room again")
    }

    /// Only what rm -rf and a path walk send may be answered before the
    /// FORGETs kept; whatever may need the space they free, or shows it,
    /// runs them first.
    @Test func onlyRequestsThatNeitherNeedNorShowSpacePass() {
        let passing: [UInt32] = [1, 2, 3, 10, 11, 27, 28, 29, 42, 44]  // lookup ... readdirplus
        for opcode in passing { #expect(DeferredForgets.mayPass(opcode: opcode)) }
        // setattr, mknod, mkdir, symlink, rename, link, open, write, statfs,
        // fsync, setxattr, create, destroy, fallocate, rename2, syncfs,
        // copy_file_range
        let waiting: [UInt32] = [4, 8, 9, 6, 12, 13, 14, 16, 17, 20, 21, 35, 38, 43, 45, 50, 47]
        for opcode in waiting { #expect(!DeferredForgets.mayPass(opcode: opcode)) }
    }

    @Test func remembersWhetherThisThreadLastReadAForget() {
        DeferredForgets.noteRead(opcode: 2)
        #expect(DeferredForgets.lastReadWasForget)
        DeferredForgets.noteRead(opcode: 3)
        #expect(!DeferredForgets.lastReadWasForget)
        DeferredForgets.noteRead(opcode: 42)
        #expect(DeferredForgets.lastReadWasForget)
        DeferredForgets.noteRead(opcode: 16)
        #expect(!DeferredForgets.lastReadWasForget)
    }
}
