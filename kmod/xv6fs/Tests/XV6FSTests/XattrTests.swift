@_spi(Host) import BentoKit
@_spi(Testing) import BentoServices
import Glibc
import Testing
import XV6FS
import XV6Layout

let version3 = Xv6Module(version: SemanticVersion(3, 0, 0), provenance: true,
                         knownFeatures: FeatureSet([.xattr, .bigfile, .unwritten, .keepSize]))

/// Extended attributes in version 3.
@Suite struct XattrTests {
    /// Version 3 without its provenance file, whose growth would hide
    /// what attributes take.
    static let version3Plain = Xv6Module(version: SemanticVersion(3, 0, 0), knownFeatures: version3.knownFeatures)

    static func mount3(_ device: any BlockDevice, _ version: Xv6Module = version3) throws -> Harness {
        let superBlock = SuperBlock(cache: LRUBufferCache(device: device, capacity: 4096))
        return Harness(device: device, superBlock: superBlock, fs: try version.mount(superBlock))
    }

    static func fresh3(blocks: UInt64 = 8192, _ version: Xv6Module = version3) throws -> Harness {
        let device = MemoryBlockDevice(blockCount: blocks)
        try Format.format(device, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        return try mount3(device, version)
    }

    /// The features in the superblock at home, once the cache's writer has
    /// written what the last commit gave it.
    static func diskFeatures(_ device: any BlockDevice) throws -> FeatureSet {
        BackgroundWriteDevice.waitForAllWrites()
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: Layout.blockSize, alignment: 4096)
        defer { page.deallocate() }
        try device.read(block: Layout.superblockNumber, into: page)
        return try Superblock.decode(UnsafeRawBufferPointer(page), deviceBlocks: device.blockCount).features
    }

    func set(_ h: Harness, _ ino: InodeNumber, _ name: String, _ value: [UInt8], flags: Int32 = 0,
             as who: RequestContext = ctx) throws {
        try value.withUnsafeBytes { try h.fs.setxattr(who, ino: ino, name: FileName(name), value: $0, flags: flags) }
    }

    func get(_ h: Harness, _ ino: InodeNumber, _ name: String) throws -> [UInt8] {
        try h.fs.getxattr(ctx, ino: ino, name: FileName(name))
    }

    func names(_ h: Harness, _ ino: InodeNumber, as who: RequestContext = ctx) throws -> [String] {
        try h.fs.listxattr(who, ino: ino).map(\.description)
    }

    @Test func setGetListRemove() throws {
        let h = try Self.fresh3(blocks: 8192, Self.version3Plain)
        let ino = try h.writeFile("/f", [1, 2, 3])
        #expect(try names(h, ino) == [])
        #expect(errno { _ = try get(h, ino, "user.a") } == .ENODATA)
        let big = pattern(20_000, seed: 1)
        try set(h, ino, "user.a", Array("hello".utf8))
        try set(h, ino, "user.big", big)
        try set(h, ino, "user.empty", [])
        try set(h, ino, "security.selinux", Array("system_u:object_r:etc_t:s0".utf8))
        try set(h, ino, "trusted.t", [9])
        #expect(try get(h, ino, "user.a") == Array("hello".utf8))
        #expect(try get(h, ino, "user.big") == big)
        #expect(try get(h, ino, "user.empty") == [])
        #expect(try names(h, ino) == ["user.a", "user.big", "user.empty", "security.selinux", "trusted.t"])
        // trusted.* is listed for the administrator only.
        let user = RequestContext(uid: 1000, gid: 1000, pid: 1)
        #expect(try names(h, ino, as: user) == ["user.a", "user.big", "user.empty", "security.selinux"])
        // Replacing a value in blocks by an inline one frees its blocks.
        let free = try h.statfs().freeBlocks
        try set(h, ino, "user.big", [7])
        #expect(try get(h, ino, "user.big") == [7])
        #expect(try h.statfs().freeBlocks == free + 5)
        try h.fs.removexattr(ctx, ino: ino, name: "user.a")
        #expect(errno { _ = try get(h, ino, "user.a") } == .ENODATA)
        #expect(errno { try h.fs.removexattr(ctx, ino: ino, name: "user.a") } == .ENODATA)
        for name in ["user.big", "user.empty", "security.selinux", "trusted.t"] {
            try h.fs.removexattr(ctx, ino: ino, name: FileName(name))
        }
        // The last one gone, so is the attribute block.
        #expect(try h.statfs().freeBlocks == free + 6)
        #expect(try names(h, ino) == [])
        // Directories and ACL names too.
        let dir = try h.mkdir("/d")
        try set(h, dir, "system.posix_acl_default", [2, 0, 0, 0])
        let acl = Self.acl([(0x01, 7, 0), (0x08, 5, 1234), (0x04, 5, 0), (0x10, 5, 0), (0x20, 5, 0)])
        try set(h, dir, "system.posix_acl_access", acl)
        #expect(try get(h, dir, "system.posix_acl_access") == acl)
        try h.fs.sync()
        try expectClean(h.device, "after set and remove")
    }

    @Test func flagsAndLimits() throws {
        let h = try Self.fresh3()
        let ino = try h.writeFile("/f", [1])
        try set(h, ino, "user.x", [1], flags: 1)
        #expect(errno { try set(h, ino, "user.x", [2], flags: 1) } == .EEXIST)
        #expect(errno { try set(h, ino, "user.y", [2], flags: 2) } == .ENODATA)
        try set(h, ino, "user.x", [3], flags: 2)
        #expect(try get(h, ino, "user.x") == [3])
        #expect(errno { try set(h, ino, "user.x", [3], flags: 4) } == .EINVAL)
        // Names: up to 255 bytes, in a namespace kept, not empty after it.
        try set(h, ino, "user." + String(repeating: "n", count: 250), [1])
        #expect(errno { try set(h, ino, "user." + String(repeating: "n", count: 251), [1]) } == .ERANGE)
        #expect(errno { try set(h, ino, "user.", [1]) } == .EINVAL)
        #expect(errno { try set(h, ino, "other.x", [1]) } == .EOPNOTSUPP)
        #expect(errno { try set(h, ino, "system.other", [1]) } == .EOPNOTSUPP)
        // trusted.* for the administrator only; user.* not on a symlink.
        let user = RequestContext(uid: 1000, gid: 1000, pid: 1)
        #expect(errno { try set(h, ino, "trusted.x", [1], as: user) } == .EPERM)
        let link = try h.fs.symlink(ctx, parent: root, name: "l", target: Array("f".utf8))
        h.fs.forget(ino: link.ino, count: 1)
        #expect(errno { try set(h, link.ino, "user.x", [1]) } == .EPERM)
        #expect(errno { _ = try get(h, link.ino, "user.x") } == .ENODATA)
        try set(h, link.ino, "security.x", [1])
        // Values: up to 64 KiB.
        let largest = pattern(65536, seed: 2)
        try set(h, ino, "user.largest", largest)
        #expect(try get(h, ino, "user.largest") == largest)
        #expect(errno { try set(h, ino, "user.toolarge", pattern(65537, seed: 3)) } == .E2BIG)
        // Names and small values share one block: ENOSPC once it is full.
        let other = try h.writeFile("/g", [1])
        let value = [UInt8](repeating: 5, count: 1000)
        for i in 0..<4 { try set(h, other, "user.v\(i)", value) }
        #expect(errno { try set(h, other, "user.v4", value) } == .ENOSPC)
        #expect(try names(h, other).count == 4)
        try h.fs.sync()
        try expectClean(h.device, "after the limits")
    }

    @Test func firstUseSetsTheIncompatBitInTheSameTransaction() throws {
        let h = try Self.fresh3()
        let ino = try h.writeFile("/f", [1])
        try h.fs.sync()
        #expect(try Self.diskFeatures(h.device) == .none)
        try set(h, ino, "user.a", [1])
        // Committed at once: the superblock on the disk says so, and the
        // transaction that did it holds the attribute block too.
        #expect(try Self.diskFeatures(h.device) == FeatureSet([.xattr]))
        let header = try h.superBlock.cache.withBlock(2) { try #require(LogHeader.decode($0, capacity: Layout.maxLogBlocks)) }
        let inodeBlock = try Volume3Probe.inodeSlotBlock(h.device, ino: UInt32(ino))
        #expect(header.blocks.contains(UInt32(Layout.superblockNumber)))
        #expect(header.blocks.contains(inodeBlock))
        // Versions 1 and 2 refuse the image now, at mount and in the preflight.
        try h.fs.destroy()
        for old in [module, Xv6Module(version: SemanticVersion(2, 0, 0), provenance: true)] {
            let superBlock = SuperBlock(cache: LRUBufferCache(device: h.device, capacity: 256))
            #expect(throws: UnsupportedFeatures.self) { _ = try old.mount(superBlock) }
            #expect(throws: UnsupportedFeatures.self) { try old.checkCanServe(superBlock) }
        }
        try expectClean(h.device, "after the first attribute")
    }

    @Test func persistsAcrossRemountAndUpgrade() throws {
        var h = try Self.fresh3()
        let ino = try h.writeFile("/f", [1])
        let big = pattern(9000, seed: 4)
        try set(h, ino, "user.small", [1, 2])
        try set(h, ino, "user.big", big)
        // A state handed over with the transaction open: the next instance
        // carries on from it.
        let state = try h.fs.exportState(format: Xv6Module.provenanceStateFormat)
        let restored = try version3.restore(h.superBlock, from: state)
        #expect(try restored.getxattr(ctx, ino: ino, name: "user.big") == big)
        try restored.removexattr(ctx, ino: ino, name: "user.small")
        h = Harness(device: h.device, superBlock: h.superBlock, fs: restored)
        try h.fs.destroy()
        h = try Self.mount3(h.device)
        #expect(try names(h, ino) == ["user.big"])
        #expect(try get(h, ino, "user.big") == big)
        // A version 2 refuses to take the state over.
        let again = try h.fs.exportState(format: Xv6Module.provenanceStateFormat)
        #expect(throws: UnsupportedFeatures.self) {
            _ = try Xv6Module(version: SemanticVersion(2, 0, 0), provenance: true).restore(h.superBlock, from: again)
        }
        try h.fs.destroy()
        try expectClean(h.device, "after remounts")
    }

    /// The kernel's encoding of an access ACL: version 2, then (tag, perm, id).
    static func acl(_ entries: [(UInt16, UInt16, UInt32)]) -> [UInt8] {
        var bytes: [UInt8] = [2, 0, 0, 0]
        for (tag, perm, id) in entries {
            withUnsafeBytes(of: tag.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: perm.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: id.littleEndian) { bytes += $0 }
        }
        return bytes
    }

    @Test func anAccessACLKeepsTheModeInStep() throws {
        let h = try Self.fresh3()
        let ino = try h.writeFile("/f", [1])
        _ = try h.fs.setattr(ctx, ino: ino, SetAttributes(mode: 0o600), handle: nil)
        // user::rw-, user:1234:r--, group::---, mask::r--, other::---: the group bits are the mask's.
        let extended = Self.acl([(0x01, 6, 0), (0x02, 4, 1234), (0x04, 0, 0), (0x10, 4, 0), (0x20, 0, 0)])
        try set(h, ino, "system.posix_acl_access", extended)
        #expect(try h.fs.getattr(ctx, ino: ino).mode & 0o777 == 0o640)
        #expect(try get(h, ino, "system.posix_acl_access") == extended)
        // chmod: the owner, mask and other entries follow the new mode.
        _ = try h.fs.setattr(ctx, ino: ino, SetAttributes(mode: 0o750), handle: nil)
        #expect(try get(h, ino, "system.posix_acl_access")
                == Self.acl([(0x01, 7, 0), (0x02, 4, 1234), (0x04, 0, 0), (0x10, 5, 0), (0x20, 0, 0)]))
        // One that says no more than a mode: the mode, and no attribute kept.
        try set(h, ino, "system.posix_acl_access", Self.acl([(0x01, 7, 0), (0x04, 5, 0), (0x20, 1, 0)]))
        #expect(try h.fs.getattr(ctx, ino: ino).mode & 0o777 == 0o751)
        #expect(try names(h, ino) == [])
        #expect(errno { try set(h, ino, "system.posix_acl_access", [1, 2, 3]) } == .EINVAL)
        try h.fs.sync()
        try expectClean(h.device, "after ACLs")
    }

    @Test func newInodesInheritTheDefaultACL() throws {
        let h = try Self.fresh3()
        let dir = try h.mkdir("/d", mode: 0o755)
        // default: user::rwx, user:1234:rwx, group::r-x, mask::rwx, other::r-x
        let defaultACL = Self.acl([(0x01, 7, 0), (0x02, 7, 1234), (0x04, 5, 0), (0x10, 7, 0), (0x20, 5, 0)])
        try set(h, dir, "system.posix_acl_default", defaultACL)
        // A file asked 0644: the mask keeps r--, the mode's group bits too.
        let (file, open) = try h.fs.create(ctx, parent: dir, name: "f", mode: 0o644, flags: OpenFlags.readWrite)
        try h.fs.release(ctx, ino: file.ino, handle: open.handle)
        h.fs.forget(ino: file.ino, count: 1)
        #expect(file.attributes.mode & 0o777 == 0o644)
        #expect(try get(h, file.ino, "system.posix_acl_access")
                == Self.acl([(0x01, 6, 0), (0x02, 7, 1234), (0x04, 5, 0), (0x10, 4, 0), (0x20, 4, 0)]))
        #expect(errno { _ = try get(h, file.ino, "system.posix_acl_default") } == .ENODATA)
        // A directory inherits the default ACL as well.
        let sub = try h.mkdir("/d/s", mode: 0o750)
        #expect(try get(h, sub, "system.posix_acl_default") == defaultACL)
        #expect(try h.fs.getattr(ctx, ino: sub).mode & 0o777 == 0o750)
        // Deleting them gives every block back.
        try h.fs.unlink(ctx, parent: dir, name: "f")
        try h.fs.rmdir(ctx, parent: dir, name: "s")
        try h.fs.sync()
        try expectClean(h.device, "after inheriting")
    }

    /// Attribute changes answered and not committed survive the death of
    /// the process through the operation journal, like every change.
    @Test func answeredChangesSurviveADeathThroughTheJournal() throws {
        let device = try JournalTests.freshDevice()
        func mount(_ journalFD: Int32?) throws -> (Harness, SharedMemoryJournal) {
            let cache = LRUBufferCache(device: device, capacity: 4096)
            let journal = try journalFD.map { try SharedMemoryJournal(adopting: $0, cache: cache) }
                ?? SharedMemoryJournal(cache: cache, capacityBlocks: 1024)
            let superBlock = SuperBlock(cache: cache, journal: journal)
            return (Harness(device: device, superBlock: superBlock, fs: try version3.mount(superBlock)), journal)
        }
        let (h, journal) = try mount(nil)
        let ino = try h.writeFile("/f", [1])
        try set(h, ino, "user.first", [1])  // the first use commits
        let big = pattern(9000, seed: 5)
        try set(h, ino, "user.big", big)
        try set(h, ino, "user.small", [2])
        try h.fs.removexattr(ctx, ino: ino, name: "user.first")
        #expect(journal.pendingOperations >= 3)  // and the provenance file's
        // The process dies without a commit; the next one adopts the memfd.
        let (after, _) = try mount(dup(journal.fd))
        #expect(try names(after, ino) == ["user.big", "user.small"])
        #expect(try get(after, ino, "user.big") == big)
        try after.fs.destroy()
        try expectClean(device, "after the journal's replay")
    }

    /// 2.0.0 hands its state to 3.0.0, which then keeps attributes.
    @Test func upgradeFromVersionTwo() throws {
        let device = MemoryBlockDevice(blockCount: 8192)
        try Format.format(device, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        let superBlock = SuperBlock(cache: LRUBufferCache(device: device, capacity: 4096))
        let two = Xv6Module(version: SemanticVersion(2, 0, 0), provenance: true)
        let old = Harness(device: device, superBlock: superBlock, fs: try two.mount(superBlock))
        let ino = try old.writeFile("/f", [1, 2, 3])
        let format = try #require(two.descriptor.handoverFormat(to: version3.descriptor))
        let h = Harness(device: device, superBlock: superBlock,
                        fs: try version3.restore(superBlock, from: try old.fs.exportState(format: format)))
        try set(h, ino, "user.a", [4])
        #expect(try get(h, ino, "user.a") == [4])
        #expect(try h.readFile("/f") == [1, 2, 3])
        try h.fs.destroy()
        try expectClean(device, "after the upgrade")
    }

    @Test func versionsOneAndTwoKeepNone() throws {
        let h = try Harness.fresh()
        let ino = try h.writeFile("/f", [1])
        #expect(errno { try set(h, ino, "user.a", [1]) } == .EOPNOTSUPP)
        #expect(errno { try h.fs.removexattr(ctx, ino: ino, name: "user.a") } == .EOPNOTSUPP)
        #expect(!module.posixACL)
        #expect(version3.posixACL)
    }

    @Test func churnLeavesACleanImage() throws {
        let h = try Self.fresh3(blocks: 16384, Self.version3Plain)
        try h.fs.sync()
        let freeAtStart = try h.statfs().freeBlocks
        var g = SeededGenerator(seed: 42)
        var files: [InodeNumber] = []
        var expected: [InodeNumber: [String: [UInt8]]] = [:]
        for i in 0..<40 { files.append(try h.writeFile("/f\(i)", [UInt8(i)])) }
        for step in 0..<2000 {
            let ino = files[Int(g.next() % UInt64(files.count))]
            let name = "user.k\(g.next() % 6)"
            if g.next() % 3 == 0 {
                let err = errno { try h.fs.removexattr(ctx, ino: ino, name: FileName(name)) }
                #expect(err == (expected[ino]?[name] == nil ? .ENODATA : nil))
                expected[ino]?[name] = nil
            } else {
                let sizes = [0, 10, 600, 1025, 5000, 20_000]
                let value = pattern(sizes[Int(g.next() % UInt64(sizes.count))], seed: UInt64(step))
                if errno({ try set(h, ino, name, value) }) == nil { expected[ino, default: [:]][name] = value }
            }
        }
        for ino in files {
            for (name, value) in expected[ino] ?? [:] { #expect(try get(h, ino, name) == value) }
        }
        try h.fs.sync()
        try expectClean(h.device, "after churn")
        // Files with attributes deleted: every block comes back.
        for i in 0..<40 { try h.fs.unlink(ctx, parent: root, name: FileName("f\(i)")) }
        try h.fs.sync()
        #expect(try h.statfs().freeBlocks == freeAtStart, "blocks not given back")
        try expectClean(h.device, "after deleting the files")
    }
}

enum Volume3Probe {
    /// The inode table block holding inode `ino`.
    static func inodeSlotBlock(_ device: any BlockDevice, ino: UInt32) throws -> UInt32 {
        BackgroundWriteDevice.waitForAllWrites()
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: Layout.blockSize, alignment: 4096)
        defer { page.deallocate() }
        try device.read(block: Layout.superblockNumber, into: page)
        let sb = try Superblock.decode(UnsafeRawBufferPointer(page), deviceBlocks: device.blockCount)
        return UInt32(sb.inodeLocation(ino).block)
    }
}
