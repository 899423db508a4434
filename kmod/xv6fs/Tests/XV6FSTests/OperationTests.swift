@_spi(Host) import BentoKit
@_spi(Testing) import BentoServices
import Testing
import XV6FS
import XV6Layout

@Suite struct OperationTests {
    @Test func createWriteReadAndStat() throws {
        let h = try Harness.fresh()
        let data = pattern(10_000, seed: 1)
        let ino = try h.writeFile("a.txt", data)
        #expect(try h.readFile("a.txt") == data)
        let attr = try h.fs.getattr(ctx, ino: ino)
        #expect(attr.size == 10_000)
        #expect(attr.mode == FileMode.regular | 0o644)
        #expect(attr.nlink == 1)
        #expect(attr.blocks == 3 * 8)
        // Reads past the end are short; reads at the end are empty.
        let fh = try h.fs.open(ctx, ino: ino, flags: OpenFlags.readOnly).handle
        var buf = [UInt8](repeating: 0, count: 100)
        #expect(try buf.withUnsafeMutableBytes { try h.fs.read(ctx, ino: ino, handle: fh, offset: 9_950, into: $0) } == 50)
        #expect(try buf.withUnsafeMutableBytes { try h.fs.read(ctx, ino: ino, handle: fh, offset: 10_000, into: $0) } == 0)
        try h.fs.release(ctx, ino: ino, handle: fh)
    }

    /// The kernel places appends: a write lands at its offset even on an
    /// O_APPEND handle, and a cached page written back again at offset 0
    /// replaces what is there instead of growing the file.
    @Test func writesOnAppendHandlesLandAtTheirOffset() throws {
        let h = try Harness.fresh()
        let ino = try h.writeFile("log", Array("hello ".utf8))
        let fh = try h.fs.open(ctx, ino: ino, flags: OpenFlags.writeOnly | OpenFlags.append).handle
        _ = try Array("world".utf8).withUnsafeBytes { try h.fs.write(ctx, ino: ino, handle: fh, offset: 6, data: $0) }
        #expect(try h.readFile(ino) == Array("hello world".utf8))
        _ = try Array("hello world".utf8).withUnsafeBytes { try h.fs.write(ctx, ino: ino, handle: fh, offset: 0, data: $0) }
        try h.fs.release(ctx, ino: ino, handle: fh)
        #expect(try h.readFile(ino) == Array("hello world".utf8))
        try h.writeFile("log", Array("J".utf8), create: false)
        #expect(try h.readFile(ino) == Array("Jello world".utf8))
    }

    @Test func errorsForNamesAndTypes() throws {
        let h = try Harness.fresh()
        try h.mkdir("d")
        try h.writeFile("d/f", [1, 2, 3])
        let d = try h.resolve("d"), f = try h.resolve("d/f")
        #expect(errno { _ = try h.fs.lookup(ctx, parent: root, name: "missing") } == .ENOENT)
        #expect(errno { _ = try h.fs.mkdir(ctx, parent: root, name: "d", mode: 0o755) } == .EEXIST)
        #expect(errno { _ = try h.fs.create(ctx, parent: d, name: "f", mode: 0o644, flags: 0) } == .EEXIST)
        let long = FileName([UInt8](repeating: 0x61, count: 256))
        let longest = FileName([UInt8](repeating: 0x62, count: 255))
        #expect(errno { _ = try h.fs.create(ctx, parent: root, name: long, mode: 0o644, flags: 0) } == .ENAMETOOLONG)
        #expect(errno { _ = try h.fs.lookup(ctx, parent: root, name: long) } == .ENAMETOOLONG)
        let (e, open) = try h.fs.create(ctx, parent: root, name: longest, mode: 0o644, flags: 0)
        try h.fs.release(ctx, ino: e.ino, handle: open.handle)
        #expect(try h.list(root).contains(longest.description))
        #expect(errno { _ = try h.fs.lookup(ctx, parent: f, name: "x") } == .ENOTDIR)
        #expect(errno { _ = try h.fs.mkdir(ctx, parent: f, name: "x", mode: 0o755) } == .ENOTDIR)
        #expect(errno { try h.fs.rmdir(ctx, parent: d, name: "f") } == .ENOTDIR)
        #expect(errno { try h.fs.rmdir(ctx, parent: root, name: "d") } == .ENOTEMPTY)
        #expect(errno { try h.fs.unlink(ctx, parent: root, name: "d") } == .EISDIR)
        #expect(errno { _ = try h.fs.open(ctx, ino: d, flags: OpenFlags.writeOnly) } == .EISDIR)
        #expect(errno { _ = try h.fs.readlink(ctx, ino: f) } == .EINVAL)
        #expect(errno { try h.fs.unlink(ctx, parent: d, name: "nothing") } == .ENOENT)
        #expect(errno { _ = try h.fs.opendir(ctx, ino: f, flags: 0) } == .ENOTDIR)
        try h.fs.unlink(ctx, parent: d, name: "f")
        try h.fs.rmdir(ctx, parent: root, name: "d")
        #expect(try h.list(root) == [longest.description])
    }

    @Test func directoriesCountLinksAndList() throws {
        var h = try Harness.fresh()
        try h.mkdir("a")
        try h.mkdir("a/b")
        try h.mkdir("a/c")
        #expect(try h.fs.getattr(ctx, ino: try h.resolve("a")).nlink == 4)
        #expect(try h.fs.getattr(ctx, ino: root).nlink == 3)
        #expect(try h.resolve("a/b/..") == h.resolve("a"))
        #expect(try h.resolve("a/.") == h.resolve("a"))
        #expect(Set(try h.list(try h.resolve("a"))) == ["b", "c"])
        try h.fs.rmdir(ctx, parent: try h.resolve("a"), name: "b")
        #expect(try h.fs.getattr(ctx, ino: try h.resolve("a")).nlink == 3)
        h = try h.remount()
        #expect(try h.list(try h.resolve("a")) == ["c"])
        #expect(try h.fs.getattr(ctx, ino: try h.resolve("a")).nlink == 3)
    }

    @Test func largeDirectoryListsCompletelyWithStableOffsets() throws {
        let h = try Harness.fresh(blocks: 16384, inodes: 32768)
        let count = 20_000
        let dir = try h.mkdir("big")
        for i in 0..<count {
            let (e, open) = try h.fs.create(ctx, parent: dir, name: FileName("file-\(i)"), mode: 0o644, flags: 0)
            try h.fs.release(ctx, ino: e.ino, handle: open.handle)
            h.fs.forget(ino: e.ino, count: 1)
        }
        let names = try h.list(dir, batch: 97)
        #expect(names.count == count)
        #expect(Set(names).count == count)
        // Removing entries between readdir calls never makes others vanish.
        let fh = try h.fs.opendir(ctx, ino: dir, flags: 0)
        var seen: Set<String> = []
        var offset: UInt64 = 0
        var round = 0
        while true {
            var got = 0
            var referenced: [InodeNumber] = []
            try h.fs.readdir(ctx, ino: dir, handle: fh, offset: offset, plus: round % 2 == 0) { e in
                guard got < 500 else { return false }
                got += 1
                offset = e.nextOffset
                seen.insert(e.name.description)
                if let entry = e.entry { referenced.append(entry.ino) }
                return true
            }
            for ino in referenced { h.fs.forget(ino: ino, count: 1) }
            if got == 0 { break }
            // Delete 50 names we have already seen.
            for name in seen.prefix(50) where name.hasPrefix("file-") {
                _ = try? h.fs.unlink(ctx, parent: dir, name: FileName(name))
            }
            round += 1
        }
        try h.fs.releasedir(ctx, ino: dir, handle: fh)
        #expect(seen.count == count + 2)
    }

    /// Inserts go to the record the index names as a block's room without
    /// walking the block; the space removals leave all over the blocks is
    /// still found before the directory grows.
    @Test func directoriesReuseTheSpaceRemovalsLeave() throws {
        var h = try Harness.fresh(blocks: 16384, inodes: 8192)
        let dir = try h.mkdir("d")
        // Records of 12 to 72 bytes.
        let long = (0..<3000).map { "n\($0)-" + String(repeating: "x", count: $0 % 58) }
        for name in long { try h.createEmpty(in: dir, name) }
        let size = try h.fs.getattr(ctx, ino: dir).size
        let removed = stride(from: 0, to: long.count, by: 3).map { long[$0] }
        for name in removed { try h.fs.unlink(ctx, parent: dir, name: FileName(name)) }
        // As many short names (16-byte records) as were removed: the holes hold them all.
        let short = removed.indices.map { "s\($0)" }
        for name in short { try h.createEmpty(in: dir, name) }
        #expect(try h.fs.getattr(ctx, ino: dir).size == size)
        let expected = Set(long).subtracting(removed).union(short)
        #expect(Set(try h.list(dir)) == expected)
        try expectClean(h.device, "after the reinserts")
        h = try h.remount()
        let again = try h.resolve("d")
        #expect(Set(try h.list(again)) == expected)
        for name in expected.shuffled().prefix(500) {
            let e = try h.fs.lookup(ctx, parent: again, name: FileName(name))
            h.fs.forget(ino: e.ino, count: 1)
        }
    }

    /// A removal leaves its record unused where it is; runs of such records
    /// must still take a name longer than any one of them.
    @Test func directoriesFoldTheSpaceRemovalsLeave() throws {
        var h = try Harness.fresh(blocks: 16384, inodes: 8192)
        let dir = try h.mkdir("d")
        // 16-byte records, made in order: neighbours on disk.
        let short = (0..<2048).map { "s" + String(1000 + $0) }
        for name in short { try h.createEmpty(in: dir, name) }
        let size = try h.fs.getattr(ctx, ino: dir).size
        // 16 runs of 20 neighbours each: 320 bytes free in each run, in
        // records of 16.
        let removed = short.indices.filter { (40..<60).contains($0 % 128) }.map { short[$0] }
        for name in removed { try h.fs.unlink(ctx, parent: dir, name: FileName(name)) }
        // A 255-byte name takes a 264-byte record: only a run holds one.
        let long = (0..<16).map { String(format: "%02d", $0) + String(repeating: "y", count: 253) }
        for name in long { try h.createEmpty(in: dir, name) }
        #expect(try h.fs.getattr(ctx, ino: dir).size == size)
        let expected = Set(short).subtracting(removed).union(long)
        #expect(Set(try h.list(dir)) == expected)
        try expectClean(h.device, "after the long names")
        h = try h.remount()
        let again = try h.resolve("d")
        #expect(Set(try h.list(again)) == expected)
        for name in long {
            let e = try h.fs.lookup(ctx, parent: again, name: FileName(name))
            h.fs.forget(ino: e.ino, count: 1)
        }
        for name in removed.prefix(40) {
            #expect(errno { _ = try h.fs.lookup(ctx, parent: again, name: FileName(name)) } == .ENOENT)
        }
    }

    /// Creates, removals and renames of names 1 to 255 bytes long in one
    /// directory, at random: the listing, lookups and fsck must agree with
    /// the set of names throughout, and after a remount.
    @Test(arguments: [11, 12, 13] as [UInt64])
    func directoryChurnMatchesTheNames(seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        var h = try Harness.fresh(blocks: 16384, inodes: 8192)
        let dir = try h.mkdir("d")
        var names = Set<String>()
        func randomName() -> String {
            // Mostly short names, some up to the longest allowed.
            let length = Int.random(in: 0..<4, using: &rng) == 0 ? Int.random(in: 1...255, using: &rng)
                                                                  : Int.random(in: 1...24, using: &rng)
            return String((0..<length).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement(using: &rng)! })
        }
        for step in 1...12_000 {
            let roll = Int.random(in: 0..<100, using: &rng)
            if roll < 55 || names.isEmpty {
                let name = randomName()
                guard !names.contains(name) else { continue }
                try h.createEmpty(in: dir, name)
                names.insert(name)
            } else if roll < 93 {
                let name = names.randomElement(using: &rng)!
                try h.fs.unlink(ctx, parent: dir, name: FileName(name))
                names.remove(name)
            } else {
                let name = names.randomElement(using: &rng)!, to = randomName()
                guard !names.contains(to) else { continue }
                try h.fs.rename(ctx, parent: dir, name: FileName(name), newParent: dir, newName: FileName(to), flags: [])
                names.remove(name)
                names.insert(to)
            }
            if step % 3000 == 0 {
                #expect(Set(try h.list(dir)) == names, "seed \(seed), step \(step)")
                try expectClean(h.device, "seed \(seed), step \(step)")
            }
        }
        h = try h.remount()
        let again = try h.resolve("d")
        #expect(Set(try h.list(again)) == names, "seed \(seed), after the remount")
        for name in names {
            let e = try h.fs.lookup(ctx, parent: again, name: FileName(name))
            h.fs.forget(ino: e.ino, count: 1)
        }
    }

    @Test func renameCases() throws {
        let h = try Harness.fresh()
        try h.mkdir("x")
        try h.mkdir("x/sub")
        try h.mkdir("y")
        try h.writeFile("x/f", [1])
        try h.writeFile("y/g", [2])
        let x = try h.resolve("x"), y = try h.resolve("y"), sub = try h.resolve("x/sub")
        // A file over an existing file: the old target is gone.
        try h.fs.rename(ctx, parent: x, name: "f", newParent: y, newName: "g", flags: [])
        #expect(try h.readFile("y/g") == [1])
        #expect(errno { _ = try h.resolve("x/f") } == .ENOENT)
        // A directory across directories: link counts and ".." follow.
        try h.fs.rename(ctx, parent: x, name: "sub", newParent: y, newName: "sub2", flags: [])
        #expect(try h.resolve("y/sub2/..") == y)
        #expect(try h.resolve("y/sub2") == sub)
        #expect(try h.fs.getattr(ctx, ino: x).nlink == 2)
        #expect(try h.fs.getattr(ctx, ino: y).nlink == 3)
        // Refusals.
        try h.writeFile("x/f2", [3])
        #expect(errno { try h.fs.rename(ctx, parent: x, name: "f2", newParent: y, newName: "g", flags: .noReplace) } == .EEXIST)
        #expect(errno { try h.fs.rename(ctx, parent: x, name: "f2", newParent: y, newName: "g", flags: .exchange) } == .EINVAL)
        #expect(errno { try h.fs.rename(ctx, parent: root, name: "y", newParent: sub, newName: "loop", flags: []) } == .EINVAL)
        #expect(errno { try h.fs.rename(ctx, parent: x, name: "f2", newParent: y, newName: "sub2", flags: []) } == .EISDIR)
        #expect(errno { try h.fs.rename(ctx, parent: y, name: "sub2", newParent: x, newName: "f2", flags: []) } == .ENOTDIR)
        try h.writeFile("y/sub2/inner", [4])
        try h.mkdir("x/empty")
        #expect(errno { try h.fs.rename(ctx, parent: x, name: "empty", newParent: y, newName: "sub2", flags: []) } == .ENOTEMPTY)
        #expect(errno { try h.fs.rename(ctx, parent: x, name: "nope", newParent: y, newName: "z", flags: []) } == .ENOENT)
        // A directory over an empty directory.
        try h.fs.rename(ctx, parent: y, name: "sub2", newParent: x, newName: "empty", flags: [])
        #expect(try h.readFile("x/empty/inner") == [4])
        #expect(try h.fs.getattr(ctx, ino: x).nlink == 3)
        #expect(try h.fs.getattr(ctx, ino: y).nlink == 2)
        // Renaming onto another name of the same inode changes nothing.
        _ = try h.fs.link(ctx, ino: try h.resolve("x/f2"), newParent: x, newName: "f3")
        try h.fs.rename(ctx, parent: x, name: "f2", newParent: x, newName: "f3", flags: [])
        #expect(Set(try h.list(x)) == ["f2", "f3", "empty"])
    }

    @Test func hardLinksAndLimits() throws {
        let h = try Harness.fresh(blocks: 16384)
        let ino = try h.writeFile("f", [9, 9])
        let e = try h.fs.link(ctx, ino: ino, newParent: root, newName: "g")
        h.fs.forget(ino: e.ino, count: 1)
        #expect(e.attributes.nlink == 2)
        try h.fs.unlink(ctx, parent: root, name: "f")
        #expect(try h.readFile("g") == [9, 9])
        #expect(try h.fs.getattr(ctx, ino: ino).nlink == 1)
        #expect(errno { _ = try h.fs.link(ctx, ino: root, newParent: root, newName: "r") } == .EPERM)
        #expect(errno { _ = try h.fs.link(ctx, ino: ino, newParent: root, newName: "g") } == .EEXIST)
        // EMLINK at the link limit.
        let dir = try h.mkdir("links")
        for i in 1..<Int(Layout.maxLinks) {
            let l = try h.fs.link(ctx, ino: ino, newParent: dir, newName: FileName("l\(i)"))
            h.fs.forget(ino: l.ino, count: 1)
        }
        #expect(try h.fs.getattr(ctx, ino: ino).nlink == Layout.maxLinks)
        #expect(errno { _ = try h.fs.link(ctx, ino: ino, newParent: dir, newName: "one-more") } == .EMLINK)
    }

    @Test func symlinksAndSpecialFiles() throws {
        var h = try Harness.fresh()
        let target = Array("../some/where/else".utf8)
        let e = try h.fs.symlink(ctx, parent: root, name: "link", target: target)
        h.fs.forget(ino: e.ino, count: 1)
        #expect(e.attributes.mode & FileMode.typeMask == FileMode.symlink)
        #expect(e.attributes.size == UInt64(target.count))
        let fifo = try h.fs.mknod(ctx, parent: root, name: "fifo", mode: FileMode.fifo | 0o600, rdev: 0)
        h.fs.forget(ino: fifo.ino, count: 1)
        let dev = try h.fs.mknod(ctx, parent: root, name: "null", mode: FileMode.characterDevice | 0o666, rdev: 0x103)
        h.fs.forget(ino: dev.ino, count: 1)
        #expect(errno { _ = try h.fs.symlink(ctx, parent: root, name: "long",
                                              target: [UInt8](repeating: 0x61, count: 4096)) } == .ENAMETOOLONG)
        h = try h.remount()
        #expect(try h.fs.readlink(ctx, ino: try h.resolve("link")) == target)
        #expect(try h.fs.getattr(ctx, ino: try h.resolve("fifo")).mode == FileMode.fifo | 0o600)
        #expect(try h.fs.getattr(ctx, ino: try h.resolve("null")).rdev == 0x103)
    }

    @Test func setattrPersists() throws {
        var h = try Harness.fresh()
        let ino = try h.writeFile("f", pattern(9000, seed: 2))
        let t1 = Timespec(seconds: 1_234_567_890, nanoseconds: 123_456_789)
        let t2 = Timespec(seconds: 1_111_111_111, nanoseconds: 987_654_321)
        let attr = try h.fs.setattr(ctx, ino: ino, SetAttributes(mode: 0o4751, uid: 1000, gid: 2000,
                                                                 atime: .at(t1), mtime: .at(t2)), handle: nil)
        #expect(attr.mode == FileMode.regular | 0o4751)
        h = try h.remount()
        let after = try h.fs.getattr(ctx, ino: ino)
        #expect(after.mode == FileMode.regular | 0o4751)
        #expect(after.uid == 1000 && after.gid == 2000)
        #expect(after.atime == t1 && after.mtime == t2)
        #expect(after.ctime > t2)
    }

    @Test func truncateShrinksAndGrowsWithZeroes() throws {
        var h = try Harness.fresh()
        let data = pattern(200_000, seed: 3)
        let ino = try h.writeFile("f", data)
        let before = try h.statfs().freeBlocks
        _ = try h.fs.setattr(ctx, ino: ino, SetAttributes(size: 5000), handle: nil)
        #expect(try h.statfs().freeBlocks == before + 48)  // 49 data blocks and the indirect table, down to 2 data blocks
        _ = try h.fs.setattr(ctx, ino: ino, SetAttributes(size: 300_000), handle: nil)
        h = try h.remount()
        let back = try h.readFile(ino)
        #expect(back.count == 300_000)
        #expect(Array(back[0..<5000]) == Array(data[0..<5000]))
        #expect(back[5000...].allSatisfy { $0 == 0 })
        #expect(errno { _ = try h.fs.setattr(ctx, ino: root, SetAttributes(size: 0), handle: nil) } == .EISDIR)
        // O_TRUNC on open.
        let fh = try h.fs.open(ctx, ino: ino, flags: OpenFlags.writeOnly | OpenFlags.truncate).handle
        try h.fs.release(ctx, ino: ino, handle: fh)
        #expect(try h.fs.getattr(ctx, ino: ino).size == 0)
        #expect(try h.fs.getattr(ctx, ino: ino).blocks == 0)
    }

    /// Cuts that fall inside the indirect table and the double-indirect
    /// tree, each freeing more blocks than one operation may: what lies
    /// below a cut stays, every block above it is freed (tables included),
    /// and the image stays clean; removing the file frees the rest.
    @Test func truncatingThroughTheTablesFreesExactlyWhatIsCut() throws {
        var h = try Harness.fresh()
        let bs = Layout.blockSize, direct = Layout.directCount, perTable = Layout.addressesPerBlock
        let free = try h.statfs().freeBlocks
        // Direct blocks, a full indirect table and 300 blocks under the
        // double-indirect one (one second-level table).
        let data = pattern((direct + perTable + 300) * bs + 123, seed: 8)
        let ino = try h.writeFile("f", data)
        // The data's blocks (the last partly filled) and 3 tables: the
        // indirect, the double-indirect and one under it.
        #expect(try h.statfs().freeBlocks == free - UInt64(direct + perTable + 301 + 3))
        for (cut, dataBlocks, tables) in [
            ((direct + perTable + 100) * bs + 5, direct + perTable + 101, 3),  // inside the double-indirect tree
            ((direct + 500) * bs + 77, direct + 501, 1),                       // inside the indirect table
            (10 * bs, 10, 0),                                                  // among the direct blocks
        ] {
            _ = try h.fs.setattr(ctx, ino: ino, SetAttributes(size: UInt64(cut)), handle: nil)
            #expect(try h.statfs().freeBlocks == free - UInt64(dataBlocks + tables), "cut at \(cut)")
            try h.fs.sync()
            try expectClean(h.device, "cut at \(cut)")
            h = try h.remount()
            #expect(try h.readFile(ino) == Array(data[0..<cut]), "cut at \(cut)")
        }
        try h.fs.unlink(ctx, parent: root, name: FileName("f"))
        #expect(try h.statfs().freeBlocks == free)
        try h.fs.sync()
        try expectClean(h.device, "removed")
    }

    @Test func sparseAndHugeFiles() throws {
        var h = try Harness.fresh()
        let ino = try h.writeFile("sparse", [7], at: 10 << 20)
        #expect(try h.fs.getattr(ctx, ino: ino).size == (10 << 20) + 1)
        #expect(try h.fs.getattr(ctx, ino: ino).blocks <= 3 * 8)
        // Through the double-indirect block, past 4 GiB, to the limit.
        let last = Layout.maxFileSize - 4096
        #expect(last > 4 << 30)
        let big = try h.writeFile("big", pattern(4096, seed: 4), at: last)
        #expect(try h.fs.getattr(ctx, ino: big).size == Layout.maxFileSize)
        let fh = try h.fs.open(ctx, ino: big, flags: OpenFlags.readWrite).handle
        #expect(errno { _ = try [1].withUnsafeBytes { try h.fs.write(ctx, ino: big, handle: fh, offset: Layout.maxFileSize, data: $0) } } == .EFBIG)
        try h.fs.release(ctx, ino: big, handle: fh)
        #expect(errno { _ = try h.fs.setattr(ctx, ino: big, SetAttributes(size: Layout.maxFileSize + 1), handle: nil) } == .EFBIG)
        h = try h.remount()
        let fh2 = try h.fs.open(ctx, ino: big, flags: OpenFlags.readOnly).handle
        var tail = [UInt8](repeating: 0, count: 4096)
        _ = try tail.withUnsafeMutableBytes { try h.fs.read(ctx, ino: big, handle: fh2, offset: last, into: $0) }
        #expect(tail == pattern(4096, seed: 4))
        var hole = [UInt8](repeating: 1, count: 4096)
        _ = try hole.withUnsafeMutableBytes { try h.fs.read(ctx, ino: big, handle: fh2, offset: 1 << 30, into: $0) }
        #expect(hole.allSatisfy { $0 == 0 })
        try h.fs.release(ctx, ino: big, handle: fh2)
        let free = try h.statfs().freeBlocks
        try h.fs.unlink(ctx, parent: root, name: "big")
        #expect(try h.statfs().freeBlocks == free + 3)  // the data block, its leaf table and the double-indirect table
    }

    @Test func deviceFullIsENOSPCAndSpaceComesBack() throws {
        let h = try Harness.fresh(blocks: 512)
        let initial = try h.statfs()
        let (e, open) = try h.fs.create(ctx, parent: root, name: "fill", mode: 0o644, flags: OpenFlags.writeOnly)
        let chunk = pattern(65536, seed: 5)
        var offset: UInt64 = 0
        var failure: Errno?
        while failure == nil {
            do {
                let n = try chunk.withUnsafeBytes { try h.fs.write(ctx, ino: e.ino, handle: open.handle, offset: offset, data: $0) }
                offset += UInt64(n)
            } catch { failure = error as? Errno }
        }
        #expect(failure == .ENOSPC)
        #expect(try h.statfs().freeBlocks == 0)
        #expect(errno { _ = try h.fs.mkdir(ctx, parent: root, name: "d", mode: 0o755) } == .ENOSPC)
        try h.fs.release(ctx, ino: e.ino, handle: open.handle)
        h.fs.forget(ino: e.ino, count: 1)
        try h.fs.unlink(ctx, parent: root, name: "fill")
        #expect(try h.statfs() == initial)
    }

    // The kernel's writeback sends cached pages at their offsets: one that
    // finds the disk full must not leave the size covering it.
    @Test func writePastTheEndOnAFullDiskKeepsTheSize() throws {
        let h = try Harness.fresh(blocks: 512)
        let (e, open) = try h.fs.create(ctx, parent: root, name: "fill", mode: 0o644, flags: OpenFlags.writeOnly)
        let chunk = pattern(65536, seed: 6)
        var offset: UInt64 = 0
        while (try? chunk.withUnsafeBytes({ try h.fs.write(ctx, ino: e.ino, handle: open.handle, offset: offset, data: $0) }))
                .map({ offset += UInt64($0) }) != nil {}
        let stored = try h.fs.getattr(ctx, ino: e.ino).size
        #expect(stored == offset)
        let failure = errno {
            _ = try chunk.withUnsafeBytes { try h.fs.write(ctx, ino: e.ino, handle: open.handle, offset: offset + (1 << 20), data: $0) }
        }
        #expect(failure == .ENOSPC)
        #expect(try h.fs.getattr(ctx, ino: e.ino).size == stored)
        try h.fs.release(ctx, ino: e.ino, handle: open.handle)
    }

    @Test func inodeTableFullIsENOSPC() throws {
        let h = try Harness.fresh(blocks: 1024, inodes: 16)
        var made = 0
        var failure: Errno?
        while failure == nil {
            failure = errno { _ = try h.mkdir("d\(made)") }
            if failure == nil { made += 1 }
        }
        #expect(failure == .ENOSPC)
        #expect(made == 14)  // inodes 2...15
        #expect(try h.statfs().freeFiles == 0)
        try h.fs.rmdir(ctx, parent: root, name: "d3")
        try h.mkdir("again")
    }

    @Test func unlinkedOpenFileLivesUntilLastClose() throws {
        let h = try Harness.fresh()
        let free = try h.statfs().freeBlocks
        let data = pattern(50_000, seed: 6)
        let (e, open) = try h.fs.create(ctx, parent: root, name: "tmp", mode: 0o600, flags: OpenFlags.readWrite)
        _ = try data.withUnsafeBytes { try h.fs.write(ctx, ino: e.ino, handle: open.handle, offset: 0, data: $0) }
        try h.fs.unlink(ctx, parent: root, name: "tmp")
        #expect(errno { _ = try h.resolve("tmp") } == .ENOENT)
        var back = [UInt8](repeating: 0, count: data.count)
        _ = try back.withUnsafeMutableBytes { try h.fs.read(ctx, ino: e.ino, handle: open.handle, offset: 0, into: $0) }
        #expect(back == data)
        #expect(try h.fs.getattr(ctx, ino: e.ino).nlink == 0)
        try h.fs.release(ctx, ino: e.ino, handle: open.handle)
        #expect(try h.statfs().freeBlocks < free)  // the kernel still holds a reference
        h.fs.forget(ino: e.ino, count: 1)
        #expect(try h.statfs().freeBlocks == free)
        #expect(errno { _ = try h.fs.getattr(ctx, ino: e.ino) } == .ENOENT)
    }

    @Test func fsyncMakesDataDurableWithoutUnmount() throws {
        let h = try Harness.fresh()
        let data = pattern(30_000, seed: 7)
        let ino = try h.writeFile("durable", data)
        try h.fs.fsync(ctx, ino: ino, handle: 0, dataOnly: false)
        try h.fs.fsyncdir(ctx, ino: root, handle: 0, dataOnly: false)
        try h.writeFile("not-synced", [1, 2, 3])
        // Mount a copy of the device as it is now, as after a power cut
        // once the writes under way have landed.
        BackgroundWriteDevice.waitForAllWrites()
        let copy = MemoryBlockDevice(image: (h.device as! MemoryBlockDevice).snapshot())
        let after = try Harness(device: copy)
        #expect(try after.readFile("durable") == data)
        #expect(errno { _ = try after.resolve("not-synced") } == .ENOENT)
    }

    @Test func statfsAccessAndXattrs() throws {
        let h = try Harness.fresh(blocks: 8192, inodes: 1024)
        let s = try h.statfs()
        #expect(s.blocks == 8192 && s.blockSize == 4096 && s.nameMax == 255)
        #expect(s.files == 1023 && s.freeFiles == 1022)
        let ino = try h.writeFile("f", [1])
        _ = try h.fs.setattr(ctx, ino: ino, SetAttributes(mode: 0o640, uid: 1000, gid: 100), handle: nil)
        let owner = RequestContext(uid: 1000, gid: 5, pid: 1)
        let group = RequestContext(uid: 2000, gid: 100, pid: 1)
        let other = RequestContext(uid: 3000, gid: 300, pid: 1)
        try h.fs.access(owner, ino: ino, mask: AccessMask.read | AccessMask.write)
        try h.fs.access(group, ino: ino, mask: AccessMask.read)
        #expect(errno { try h.fs.access(group, ino: ino, mask: AccessMask.write) } == .EACCES)
        #expect(errno { try h.fs.access(other, ino: ino, mask: AccessMask.read) } == .EACCES)
        #expect(errno { try h.fs.access(ctx, ino: ino, mask: AccessMask.execute) } == .EACCES)
        try h.fs.access(ctx, ino: ino, mask: AccessMask.read | AccessMask.write)
        try h.fs.access(other, ino: ino, mask: AccessMask.exists)
        // No extended attributes: ENOSYS, so that the kernel stops asking.
        #expect(errno { _ = try h.fs.getxattr(ctx, ino: ino, name: "user.x") } == .ENOSYS)
        #expect(errno { _ = try h.fs.listxattr(ctx, ino: ino) } == .ENOSYS)
        #expect(try h.fs.getattr(ctx, ino: ino).uid == 1000)
        // New files belong to the caller.
        let (e, open) = try h.fs.create(other, parent: root, name: "mine", mode: 0o600, flags: 0)
        #expect(e.attributes.uid == 3000 && e.attributes.gid == 300)
        try h.fs.release(other, ino: e.ino, handle: open.handle)
    }

    @Test func removedDirectoryRefusesNewEntries() throws {
        let h = try Harness.fresh()
        let e = try h.fs.mkdir(ctx, parent: root, name: "gone", mode: 0o755)  // kernel keeps its reference
        try h.fs.rmdir(ctx, parent: root, name: "gone")
        #expect(errno { _ = try h.fs.mkdir(ctx, parent: e.ino, name: "x", mode: 0o755) } == .ENOENT)
        #expect(try h.fs.getattr(ctx, ino: e.ino).nlink == 0)
        h.fs.forget(ino: e.ino, count: 1)
        #expect(errno { _ = try h.fs.getattr(ctx, ino: e.ino) } == .ENOENT)
    }
}
