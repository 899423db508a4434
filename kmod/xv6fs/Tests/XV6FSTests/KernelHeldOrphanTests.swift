@_spi(Host) import BentoKit
@_spi(Testing) import BentoServices
import Glibc
import Testing
import XV6Check
import XV6FS
import XV6Layout

/// Unlinked files the kernel still holds open across the death of the
/// process: a resumed session (`SuperBlock.kernelMayHoldInodes`) keeps them
/// until the kernel's FORGET, a fresh mount reclaims them.
@Suite struct KernelHeldOrphanTests {
    /// The process dies; a new one adopts its journal and mounts, telling
    /// the module whether it resumed the kernel session.
    static func crash(_ device: any BlockDevice, _ journal: SharedMemoryJournal, resumed: Bool,
                      messages: Messages = Messages()) throws -> (Harness, SharedMemoryJournal) {
        BackgroundWriteDevice.waitForAllWrites()
        let cache = LRUBufferCache(device: device, capacity: 4096)
        let adopted = try SharedMemoryJournal(adopting: dup(journal.fd), cache: cache)
        let superBlock = SuperBlock(cache: cache, journal: adopted, kernelMayHoldInodes: resumed) { messages.append($0) }
        return (try Harness(device: device, superBlock: superBlock), adopted)
    }

    static func read(_ fs: any FileSystem, _ ino: InodeNumber, _ handle: FileHandle, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0xEE, count: count)
        let n = try bytes.withUnsafeMutableBytes { try fs.read(ctx, ino: ino, handle: handle, offset: 0, into: $0) }
        return Array(bytes[0..<n])
    }

    static func expectNoOrphans(_ device: any BlockDevice, _ comment: Comment) {
        let report = Checker(readOnly: true).check(device)
        #expect(report.isClean && !report.has(.orphan), "\(comment): \(report)")
    }

    /// create, write, unlink with the file open; the process dies before
    /// any commit. Returns the device, the journal, the inode, the handle,
    /// the data and the free counts before the file existed.
    static func unlinkedOpenFile() throws -> (MemoryBlockDevice, SharedMemoryJournal, InodeNumber, FileHandle, [UInt8], FileSystemStats) {
        let device = try JournalTests.freshDevice()
        let (h, journal) = try Harness.journaled(device)
        try h.writeFile("keep", [1, 2, 3])
        let before = try h.statfs()
        let data = pattern(70_000, seed: 5)
        let (e, open) = try h.fs.create(ctx, parent: root, name: "tmp", mode: 0o600, flags: OpenFlags.readWrite)
        _ = try data.withUnsafeBytes { try h.fs.write(ctx, ino: e.ino, handle: open.handle, offset: 0, data: $0) }
        try h.fs.unlink(ctx, parent: root, name: "tmp")
        #expect(try h.fs.getattr(ctx, ino: e.ino).nlink == 0)
        return (device, journal, e.ino, open.handle, data, before)
    }

    @Test func aResumedSessionKeepsTheUnlinkedOpenFileUntilForget() throws {
        let (device, journal, ino, handle, data, before) = try Self.unlinkedOpenFile()
        let messages = Messages()
        let (h, _) = try Self.crash(device, journal, resumed: true, messages: messages)
        let fs = h.fs
        #expect(messages.lines.contains { $0.contains("kept 1 orphan inodes") }, "\(messages.lines)")
        // Everything through the old handle and the inode number.
        #expect(try fs.getattr(ctx, ino: ino).nlink == 0)
        #expect(try Self.read(fs, ino, handle, count: data.count + 10) == data)
        _ = try ([7, 7, 7] as [UInt8]).withUnsafeBytes { try fs.write(ctx, ino: ino, handle: handle, offset: 70_000, data: $0) }
        #expect(try fs.setattr(ctx, ino: ino, SetAttributes(size: 80_000), handle: handle).size == 80_000)
        try fs.fsync(ctx, ino: ino, handle: handle, dataOnly: false)
        #expect(try Self.read(fs, ino, handle, count: 70_003) == data + [7, 7, 7])
        #expect(try h.statfs().freeFiles == before.freeFiles - 1)
        // A file made now does not take its inode number.
        let (other, otherOpen) = try fs.create(ctx, parent: root, name: "new", mode: 0o644, flags: OpenFlags.readWrite)
        #expect(other.ino != ino)
        try fs.release(ctx, ino: other.ino, handle: otherOpen.handle)
        fs.forget(ino: other.ino, count: 1)
        try fs.unlink(ctx, parent: root, name: "new")
        // The old process's handle: RELEASE frees nothing, FORGET does.
        #expect(errno { try fs.release(ctx, ino: ino, handle: handle) } == .EBADF)
        #expect(try fs.getattr(ctx, ino: ino).nlink == 0)
        fs.forget(ino: ino, count: 1)
        #expect(errno { _ = try fs.getattr(ctx, ino: ino) } == .ENOENT)
        // "new" was unlinked in this resumed session too: it waits for its
        // FORGET, which the kernel sends on eviction.
        fs.forget(ino: other.ino, count: 1)
        let after = try h.statfs()
        #expect(after.freeFiles == before.freeFiles)
        #expect(after.freeBlocks == before.freeBlocks)
        try fs.destroy()
        Self.expectNoOrphans(device, "after forget")
    }

    @Test func aFreshMountReclaimsTheOrphanAsBefore() throws {
        let (device, journal, ino, _, _, before) = try Self.unlinkedOpenFile()
        let messages = Messages()
        let (h, _) = try Self.crash(device, journal, resumed: false, messages: messages)
        #expect(messages.lines.contains { $0.contains("reclaimed 1 orphan inodes") }, "\(messages.lines)")
        #expect(errno { _ = try h.fs.getattr(ctx, ino: ino) } == .ENOENT)
        #expect(try h.statfs().freeFiles == before.freeFiles)
        #expect(try h.statfs().freeBlocks == before.freeBlocks)
        try h.fs.destroy()
        Self.expectNoOrphans(device, "fresh mount")
    }

    /// The kernel never forgets it (the process holding it outlived the
    /// mount): the orphan stays on disk, legal, and the next fresh mount
    /// reclaims it.
    @Test func anOrphanNeverForgottenWaitsForTheNextFreshMount() throws {
        let (device, journal, ino, _, _, before) = try Self.unlinkedOpenFile()
        let (h, _) = try Self.crash(device, journal, resumed: true)
        try h.fs.destroy()
        let report = Checker(readOnly: true).check(device)
        #expect(report.isClean && report.findings(FindingKind.orphan).count == 1, "\(report)")
        let fresh = try Harness(device: device)
        #expect(errno { _ = try fresh.fs.getattr(ctx, ino: ino) } == .ENOENT)
        #expect(try fresh.statfs().freeFiles == before.freeFiles)
        try fresh.fs.destroy()
        Self.expectNoOrphans(device, "next fresh mount")
    }

    /// A file the kernel got from the dead process (a lookup count and an
    /// open file this instance never saw) is unlinked after the restart.
    @Test(arguments: [false, true])
    func anUnlinkAfterTheCrashFreesNothingUntilForget(openedHere: Bool) throws {
        let device = try JournalTests.freshDevice()
        let (h0, journal) = try Harness.journaled(device)
        let data = pattern(9000, seed: 9)
        let (e, open) = try h0.fs.create(ctx, parent: root, name: "f", mode: 0o644, flags: OpenFlags.readWrite)
        _ = try data.withUnsafeBytes { try h0.fs.write(ctx, ino: e.ino, handle: open.handle, offset: 0, data: $0) }
        let before = try h0.statfs()

        let (h, _) = try Self.crash(device, journal, resumed: true)
        let fs = h.fs
        // The kernel has the dentry cached: no lookup comes first.
        var handle = open.handle
        if openedHere { handle = try fs.open(ctx, ino: e.ino, flags: OpenFlags.readWrite).handle }
        try fs.unlink(ctx, parent: root, name: "f")
        if openedHere { try fs.release(ctx, ino: e.ino, handle: handle) }  // its last count here
        #expect(try fs.getattr(ctx, ino: e.ino).nlink == 0)
        #expect(try Self.read(fs, e.ino, open.handle, count: 9000) == data)
        _ = try ([1] as [UInt8]).withUnsafeBytes { try fs.write(ctx, ino: e.ino, handle: open.handle, offset: 0, data: $0) }
        #expect(try h.statfs().freeFiles == before.freeFiles)
        fs.forget(ino: e.ino, count: 1)
        #expect(errno { _ = try fs.getattr(ctx, ino: e.ino) } == .ENOENT)
        #expect(try h.statfs().freeFiles == before.freeFiles + 1)
        try fs.destroy()
        Self.expectNoOrphans(device, "unlink after crash")
    }

    /// The kernel's FORGET can overtake a RELEASE: the orphan goes at the
    /// FORGET, and the late RELEASE touches no inode that reuses its number.
    @Test func aForgetBeforeTheLastReleaseReclaims() throws {
        let device = try JournalTests.freshDevice()
        let (h0, journal) = try Harness.journaled(device)
        try h0.writeFile("f", [1, 2, 3])
        let (h, _) = try Self.crash(device, journal, resumed: true)
        let fs = h.fs
        let e = try fs.lookup(ctx, parent: root, name: "f")
        let handle = try fs.open(ctx, ino: e.ino, flags: OpenFlags.readOnly).handle
        try fs.unlink(ctx, parent: root, name: "f")
        fs.forget(ino: e.ino, count: 2)  // the dead process's count and ours
        #expect(errno { _ = try fs.getattr(ctx, ino: e.ino) } == .ENOENT)
        let (reused, reusedOpen) = try fs.create(ctx, parent: root, name: "g", mode: 0o644, flags: OpenFlags.readWrite)
        #expect(reused.ino == e.ino)
        #expect(errno { try fs.release(ctx, ino: e.ino, handle: handle) } == .EBADF)
        try fs.release(ctx, ino: reused.ino, handle: reusedOpen.handle)
        fs.forget(ino: reused.ino, count: 1)
        #expect(try h.readFile("g") == [])
        try fs.destroy()
        Self.expectNoOrphans(device, "forget before release")
    }

    /// A live upgrade in a resumed session carries on keeping the orphan:
    /// the host lends the next instance the same superblock.
    @Test(arguments: [Xv6Module.stateFormat, Xv6Module.provenanceStateFormat])
    func anUpgradeKeepsTheOrphanUntilForget(format: StateFormat) throws {
        let (device, journal, ino, handle, data, before) = try Self.unlinkedOpenFile()
        let (h, _) = try Self.crash(device, journal, resumed: true)
        let exporter: any FileSystem = format == Xv6Module.stateFormat
            ? h.fs : try Xv6Module(version: SemanticVersion(2, 0, 0), provenance: true).restore(
                h.superBlock, from: try h.fs.exportState(format: Xv6Module.stateFormat))
        let next = Xv6Module(version: SemanticVersion(2, 0, 1), provenance: format == Xv6Module.provenanceStateFormat)
        let fs = try next.restore(h.superBlock, from: try exporter.exportState(format: format))
        #expect(try Self.read(fs, ino, handle, count: data.count) == data)
        #expect(errno { try fs.release(ctx, ino: ino, handle: handle) } == .EBADF)
        #expect(try fs.getattr(ctx, ino: ino).nlink == 0)
        let held = try fs.statfs(ctx, ino: root).freeFiles
        fs.forget(ino: ino, count: 1)
        #expect(errno { _ = try fs.getattr(ctx, ino: ino) } == .ENOENT)
        #expect(try fs.statfs(ctx, ino: root).freeFiles == held + 1)
        if format == Xv6Module.stateFormat { #expect(held + 1 == before.freeFiles) }
        try fs.destroy()
    }
}
