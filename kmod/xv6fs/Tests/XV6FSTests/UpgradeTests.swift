@_spi(Host) import BentoKit
import BentoServices
import Testing
import XV6FS
import XV6Layout

/// The upgrade API with the xv6 module: an instance exports its in-memory
/// state, and a new instance over the same superblock carries on from it.
@Suite struct UpgradeTests {
    let format = Xv6Module.stateFormat

    @Test func descriptorNamesTheHandoverFormat() {
        let next = Xv6Module(version: SemanticVersion(1, 0, 1))
        #expect(module.descriptor.fileSystem == "xv6fs")
        #expect(module.descriptor.sdkABIVersion == BentoABI.version)
        // Version 1 speaks the provenance formats too: it carries a gap on.
        #expect(module.descriptor.handoverFormat(to: next.descriptor) == StateFormat(name: "xv6fs", version: 4))
        var other = next.descriptor
        // An earlier build of version 1: the plain format.
        other.importFormats = [StateFormat(name: "xv6fs", version: 3), StateFormat(name: "xv6fs", version: 1)]
        #expect(module.descriptor.handoverFormat(to: other) == StateFormat(name: "xv6fs", version: 3))
        // One that kept its own table: the copied format.
        other.importFormats = [StateFormat(name: "xv6fs", version: 1)]
        #expect(module.descriptor.handoverFormat(to: other) == StateFormat(name: "xv6fs", version: 1))
        other.importFormats = [StateFormat(name: "xv6fs", version: 5)]
        #expect(module.descriptor.handoverFormat(to: other) == nil)
        let v2 = Xv6Module(version: SemanticVersion(2, 0, 0), provenance: true)
        #expect(v2.descriptor.handoverFormat(to: v2.descriptor) == StateFormat(name: "xv6fs", version: 4))
        #expect(v2.descriptor.handoverFormat(to: next.descriptor) == StateFormat(name: "xv6fs", version: 4))
        #expect(next.descriptor.handoverFormat(to: v2.descriptor) == StateFormat(name: "xv6fs", version: 4))
    }

    /// The host keeps the table of lookups and handles: the state that
    /// travels is the same size with 5,000 files open and 5,000 more looked
    /// up as with none. The copied format carries the table, and grows.
    @Test func theStateDoesNotGrowWithWhatTheKernelHolds() throws {
        let h = try Harness.fresh(blocks: 16384, inodes: 16384)
        let empty = try h.fs.exportState(format: format).bytes.count
        let emptyCopied = try h.fs.exportState(format: Xv6Module.copiedStateFormat).bytes.count
        for i in 0..<10_000 {
            let (entry, open) = try h.fs.create(ctx, parent: root, name: FileName("f\(i)"), mode: 0o644, flags: 0)
            if i % 2 == 0 { try h.fs.release(ctx, ino: entry.ino, handle: open.handle) }
        }
        try h.fs.fsync(ctx, ino: root, handle: 0, dataOnly: false)
        #expect(h.superBlock.references.size == (10_000, 5_000))
        #expect(try h.fs.exportState(format: format).bytes.count == empty)
        #expect(try h.fs.exportState(format: Xv6Module.copiedStateFormat).bytes.count > emptyCopied + 10_000 * 20)
    }

    /// Formats 3 (the table stays in the host) and 1 (copied into the
    /// state, for an earlier build that kept its own): with format 1 the
    /// next instance gets a superblock whose table is empty, as an earlier
    /// build's successor would, and must fill it from the state.
    @Test(arguments: [Xv6Module.stateFormat, Xv6Module.copiedStateFormat])
    func openFilesPendingLogAndOrphansCarryOver(format: StateFormat) throws {
        let h = try Harness.fresh()
        let fs = h.fs
        let free = try h.statfs().freeBlocks
        // A file held open, with writes still in the open transaction.
        let data = pattern(100_000, seed: 21)
        let (held, open) = try fs.create(ctx, parent: root, name: "held", mode: 0o644, flags: OpenFlags.readWrite)
        _ = try data.withUnsafeBytes { try fs.write(ctx, ino: held.ino, handle: open.handle, offset: 0, data: $0) }
        // An unlinked file still open: it must be freed by the next instance.
        let (orphan, orphanOpen) = try fs.create(ctx, parent: root, name: "orphan", mode: 0o644, flags: OpenFlags.readWrite)
        _ = try pattern(40_000, seed: 22).withUnsafeBytes {
            try fs.write(ctx, ino: orphan.ino, handle: orphanOpen.handle, offset: 0, data: $0)
        }
        try fs.unlink(ctx, parent: root, name: "orphan")
        let dirHandle = try fs.opendir(ctx, ino: root, flags: 0)

        let state = try fs.exportState(format: format)
        #expect(state.format == format)
        #expect(state.bytes.count < 4096)  // block numbers and counts, not contents
        let copied = format == Xv6Module.copiedStateFormat
        let superBlock = copied ? SuperBlock(cache: h.superBlock.cache) : h.superBlock
        #expect(superBlock.references.size == (copied ? (0, 0) : (3, 3)))
        let next = try module.restore(superBlock, from: state)
        #expect(superBlock.references.size == (3, 3))

        // The held file reads and writes on through its old handle.
        var back = [UInt8](repeating: 0, count: data.count)
        #expect(try back.withUnsafeMutableBytes { try next.read(ctx, ino: held.ino, handle: open.handle, offset: 0, into: $0) } == data.count)
        #expect(back == data)
        _ = try ([1, 2, 3] as [UInt8]).withUnsafeBytes { try next.write(ctx, ino: held.ino, handle: open.handle, offset: 100_000, data: $0) }
        #expect(try next.getattr(ctx, ino: held.ino).size == 100_003)
        // The directory handle still lists.
        var names: [String] = []
        try next.readdir(ctx, ino: root, handle: dirHandle, offset: 0, plus: false) { names.append($0.name.description); return true }
        #expect(Set(names) == [".", "..", "held"])
        try next.releasedir(ctx, ino: root, handle: dirHandle)
        // The orphan is reclaimed once the kernel lets go of it.
        try next.release(ctx, ino: orphan.ino, handle: orphanOpen.handle)
        next.forget(ino: orphan.ino, count: 1)
        try next.release(ctx, ino: held.ino, handle: open.handle)
        next.forget(ino: held.ino, count: 1)
        #expect(try next.statfs(ctx, ino: root).freeBlocks == free - 25)  // the 25 blocks of "held"; the orphan's are back
        // Handles are not reused after the handover.
        let (another, anotherOpen) = try next.create(ctx, parent: root, name: "another", mode: 0o644, flags: 0)
        #expect(anotherOpen.handle != open.handle && anotherOpen.handle != orphanOpen.handle)
        try next.release(ctx, ino: another.ino, handle: anotherOpen.handle)
        next.forget(ino: another.ino, count: 1)
        try next.destroy()

        let after = try Harness(device: h.device)
        var full = data
        full += [1, 2, 3]
        #expect(try after.readFile("held") == full)
        try after.fs.destroy()
        try expectClean(h.device, "after handover")
    }

    @Test func handingBackAndForthKeepsOneConsistentFileSystem() throws {
        let h = try Harness.fresh()
        var fs = h.fs
        for round in 0..<20 {
            let (e, o) = try fs.create(ctx, parent: root, name: FileName("f\(round)"), mode: 0o644, flags: OpenFlags.readWrite)
            _ = try pattern(5000 + round, seed: UInt64(round)).withUnsafeBytes {
                try fs.write(ctx, ino: e.ino, handle: o.handle, offset: 0, data: $0)
            }
            try fs.release(ctx, ino: e.ino, handle: o.handle)
            fs.forget(ino: e.ino, count: 1)
            if round % 3 == 0 { try fs.fsync(ctx, ino: e.ino, handle: 0, dataOnly: false) }
            fs = try module.restore(h.superBlock, from: try fs.exportState(format: format))
        }
        try fs.destroy()
        let after = try Harness(device: h.device)
        for round in 0..<20 {
            #expect(try after.readFile("f\(round)") == pattern(5000 + round, seed: UInt64(round)))
        }
        try after.fs.destroy()
        try expectClean(h.device, "after 20 handovers")
    }

    @Test func badStateIsRefusedAndTheOldInstanceCarriesOn() throws {
        let h = try Harness.fresh()
        try h.writeFile("keep", [4, 5, 6])
        let state = try h.fs.exportState(format: format)
        #expect(errno { _ = try h.fs.exportState(format: StateFormat(name: "ext4", version: 1)) } == .EINVAL)
        #expect(errno { _ = try module.restore(h.superBlock, from: ExportedState(format: StateFormat(name: "xv6fs", version: 9), bytes: state.bytes)) } == .EINVAL)
        #expect(errno { _ = try module.restore(h.superBlock, from: ExportedState(format: format, bytes: Array(state.bytes.dropLast(3)))) } == .EINVAL)
        #expect(errno { _ = try module.restore(h.superBlock, from: ExportedState(format: format, bytes: state.bytes + [0])) } == .EINVAL)
        var garbage = SeededGenerator(seed: 5)
        for _ in 0..<200 {
            let bytes = (0..<Int.random(in: 0..<200, using: &garbage)).map { _ in UInt8.random(in: 0...255, using: &garbage) }
            #expect(errno { _ = try module.restore(h.superBlock, from: ExportedState(format: format, bytes: bytes)) } == .EINVAL)
        }
        // A state exported from another file system does not fit this one.
        let other = try Harness.fresh()
        let foreign = try other.fs.exportState(format: format)
        #expect(errno { _ = try module.restore(h.superBlock, from: foreign) } == .EINVAL)
        // The exporting instance was never disturbed.
        try h.writeFile("keep", [7], at: 3, create: false)
        #expect(try h.readFile("keep") == [4, 5, 6, 7])
    }
}
