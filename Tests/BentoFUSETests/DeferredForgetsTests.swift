import BentoKit
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

/// The server's side: which requests run the FORGETs kept, and in what
/// order they reach the module.
@Suite struct DeferredForgetsServerTests {
    func read(_ server: FuseServer, _ opcode: UInt32) {
        requestHeader(opcode: opcode).withUnsafeBytes { server.runDeferredForgets(before: $0.baseAddress!, 40) }
    }

    @Test func aRequestThatMayNeedTheSpaceRunsThemFirstInOrder() {
        let module = ForgetRecorder()
        let server = FuseServer(fileSystem: module)
        #expect(server.deferredForgets.keep(5, 1) && server.deferredForgets.keep(6, 2))
        for opcode: UInt32 in [1, 3, 10, 11, 28, 44] { read(server, opcode) }  // rm -rf's requests
        #expect(module.forgotten.isEmpty, "they pass the FORGETs kept")
        read(server, 16)  // WRITE
        #expect(module.forgotten.map(\.ino) == [5, 6] && module.forgotten.map(\.count) == [1, 2])
        #expect(server.deferredForgets.isEmpty)
    }

    @Test func aFreeSpaceCheckRunsThemFirst() throws {
        let module = ForgetRecorder()
        let server = FuseServer(fileSystem: module)
        #expect(server.deferredForgets.keep(9, 1))
        #expect(try server.lookAtFreeSpace(module, .root) == 4096 * 10)
        #expect(module.forgotten.map(\.ino) == [9])
        #expect(module.statfsSawForgets == 1, "statfs came after the FORGET")
    }

    @Test func theHandOverRunsThemWithTheGateClosed() {
        let module = ForgetRecorder()
        let server = FuseServer(fileSystem: module)
        for ino: UInt64 in 1...3 { #expect(server.deferredForgets.keep(ino, 1)) }
        #expect(server.gate.close(timeoutNanoseconds: 1_000_000_000))
        server.runKeptForgets(on: server.fileSystem)
        server.gate.reopen()
        #expect(module.forgotten.map(\.ino) == [1, 2, 3])
    }

    @Test func afterAReplyTheyRunOnlyWhileNoRequestWaits() {
        let module = ForgetRecorder()
        let server = FuseServer(fileSystem: module)
        for ino: UInt64 in 1...3 { #expect(server.deferredForgets.keep(ino, 1)) }
        var polls = 0
        server.runDeferredForgets(while: { polls += 1; return polls <= 2 })  // a request comes after two
        #expect(module.forgotten.map(\.ino) == [1, 2])
        #expect(!server.deferredForgets.isEmpty)
    }
}

/// A module that records FORGETs and answers statfs; anything else fails.
private final class ForgetRecorder: FileSystem, @unchecked Sendable {
    var forgotten: [(ino: InodeNumber, count: UInt64)] = []
    var statfsSawForgets = -1

    func forget(ino: InodeNumber, count: UInt64) { forgotten.append((ino, count)) }
    func statfs(_ ctx: RequestContext, ino: InodeNumber) throws -> FileSystemStats {
        statfsSawForgets = forgotten.count
        return FileSystemStats(blockSize: 4096, blocks: 100, freeBlocks: 10, availableBlocks: 10, files: 10,
                               freeFiles: 5, nameMax: 255)
    }

    func initialize() throws {}
    func destroy() throws {}
    func sync() throws {}
    func lookup(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws -> Entry { throw Errno.ENOSYS }
    func getattr(_ ctx: RequestContext, ino: InodeNumber) throws -> FileAttributes { throw Errno.ENOSYS }
    func setattr(_ ctx: RequestContext, ino: InodeNumber, _ changes: SetAttributes,
                 handle: FileHandle?) throws -> FileAttributes { throw Errno.ENOSYS }
    func readlink(_ ctx: RequestContext, ino: InodeNumber) throws -> [UInt8] { throw Errno.ENOSYS }
    func mknod(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
               rdev: UInt32) throws -> Entry { throw Errno.ENOSYS }
    func mkdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32) throws -> Entry {
        throw Errno.ENOSYS
    }
    func unlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws { throw Errno.ENOSYS }
    func rmdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws { throw Errno.ENOSYS }
    func symlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName, target: [UInt8]) throws -> Entry {
        throw Errno.ENOSYS
    }
    func rename(_ ctx: RequestContext, parent: InodeNumber, name: FileName, newParent: InodeNumber,
                newName: FileName, flags: RenameFlags) throws { throw Errno.ENOSYS }
    func link(_ ctx: RequestContext, ino: InodeNumber, newParent: InodeNumber, newName: FileName) throws -> Entry {
        throw Errno.ENOSYS
    }
    func open(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> OpenReply { throw Errno.ENOSYS }
    func read(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
              into buffer: UnsafeMutableRawBufferPointer) throws -> Int { throw Errno.ENOSYS }
    func write(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
               data: UnsafeRawBufferPointer) throws -> Int { throw Errno.ENOSYS }
    func release(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle) throws { throw Errno.ENOSYS }
    func fsync(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, dataOnly: Bool) throws {
        throw Errno.ENOSYS
    }
    func opendir(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> FileHandle { throw Errno.ENOSYS }
    func readdir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64, plus: Bool,
                 _ emit: (DirectoryEntry) -> Bool) throws { throw Errno.ENOSYS }
    func releasedir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle) throws { throw Errno.ENOSYS }
    func fsyncdir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, dataOnly: Bool) throws {
        throw Errno.ENOSYS
    }
    func create(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
                flags: Int32) throws -> (Entry, OpenReply) { throw Errno.ENOSYS }
    func access(_ ctx: RequestContext, ino: InodeNumber, mask: Int32) throws { throw Errno.ENOSYS }
    func exportState(format: StateFormat) throws -> ExportedState { throw Errno.ENOSYS }
}
