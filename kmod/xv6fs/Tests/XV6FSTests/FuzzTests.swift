@_spi(Host) import BentoKit
import BentoServices
import Foundation
import Testing
import XV6Check
import XV6FS
import XV6Layout

/// Bad images: flip bytes in the blocks that matter and use the result.
/// Mounting or operating may fail, but only with an errno, never with a
/// crash or a hang; fsck must report, not crash.
@Suite(.timeLimit(.minutes(10))) struct FuzzTests {
    /// An image with a little of everything, and the blocks worth hitting.
    static func makeImage() throws -> (image: [UInt8], targets: [(String, UInt64)]) {
        let h = try Harness.fresh(blocks: 4096, inodes: 512)
        try h.mkdir("dir")
        for i in 0..<200 { try h.writeFile("dir/entry-with-a-longer-name-\(i)", [UInt8(i & 0xFF)]) }
        try h.writeFile("dir/small", pattern(3000, seed: 1))
        try h.writeFile("big", pattern(4096, seed: 2), at: 8 << 20)  // double-indirect
        try h.writeFile("big", pattern(300_000, seed: 3))  // direct and indirect
        let e = try h.fs.symlink(ctx, parent: root, name: "sym", target: Array("dir/small".utf8))
        h.fs.forget(ino: e.ino, count: 1)
        try h.fs.destroy()
        let device = h.device as! MemoryBlockDevice
        let image = device.snapshot()
        let sb = try image.withUnsafeBytes {
            try Superblock.decode(UnsafeRawBufferPointer(rebasing: $0[4096..<8192]), deviceBlocks: 4096)
        }
        func inode(_ ino: UInt32) throws -> DiskInode {
            let (block, offset) = sb.inodeLocation(ino)
            let start = Int(block) * 4096 + offset
            return try image.withUnsafeBytes { try DiskInode.decode(ino: ino, UnsafeRawBufferPointer(rebasing: $0[start..<start + 256])) }
        }
        let dirIno = UInt32(try h.resolve("dir")), bigIno = UInt32(try h.resolve("big"))
        let dir = try inode(dirIno), big = try inode(bigIno)
        var targets: [(String, UInt64)] = [
            ("superblock", 1),
            ("log header", UInt64(sb.logStart)),
            ("log block", UInt64(sb.logStart) + 1),
            ("inode table", sb.inodeLocation(1).block),
            ("inode table", sb.inodeLocation(dirIno).block),
            ("inode table", sb.inodeLocation(bigIno).block),
            ("bitmap", UInt64(sb.bitmapStart)),
            ("root directory", UInt64(sb.dataStart)),
            ("indirect", UInt64(big.indirect)),
            ("double indirect", UInt64(big.doubleIndirect)),
        ]
        for n in 0..<min(3, Int(dir.size / 4096)) { targets.append(("directory", UInt64(dir.direct[n]))) }
        return (image, targets)
    }

    /// Uses everything reachable, within bounds, ignoring errnos.
    static func exercise(_ fs: any FileSystem) {
        var budget = 2000
        func walk(_ ino: InodeNumber, depth: Int) {
            guard depth < 8, budget > 0 else { return }
            budget -= 1
            guard let attr = try? fs.getattr(ctx, ino: ino) else { return }
            switch attr.mode & FileMode.typeMask {
            case FileMode.directory:
                guard let fh = try? fs.opendir(ctx, ino: ino, flags: 0) else { return }
                var children: [InodeNumber] = []
                try? fs.readdir(ctx, ino: ino, handle: fh, offset: 0, plus: true) { e in
                    if let entry = e.entry { children.append(entry.ino) }
                    return children.count < 300
                }
                try? fs.releasedir(ctx, ino: ino, handle: fh)
                for child in children {
                    walk(child, depth: depth + 1)
                    fs.forget(ino: child, count: 1)
                }
            case FileMode.symlink:
                _ = try? fs.readlink(ctx, ino: ino)
            default:
                guard let fh = try? fs.open(ctx, ino: ino, flags: OpenFlags.readWrite).handle else { return }
                var buffer = [UInt8](repeating: 0, count: 1 << 20)
                _ = try? buffer.withUnsafeMutableBytes { try fs.read(ctx, ino: ino, handle: fh, offset: 0, into: $0) }
                _ = try? buffer.withUnsafeBytes {
                    try fs.write(ctx, ino: ino, handle: fh, offset: 5000, data: UnsafeRawBufferPointer(rebasing: $0[0..<9000]))
                }
                _ = try? fs.setattr(ctx, ino: ino, SetAttributes(size: 100), handle: fh)
                try? fs.release(ctx, ino: ino, handle: fh)
            }
        }
        walk(root, depth: 0)
        if let (e, o) = try? fs.create(ctx, parent: root, name: "new", mode: 0o644, flags: OpenFlags.readWrite) {
            _ = try? [UInt8](repeating: 7, count: 20_000).withUnsafeBytes {
                try fs.write(ctx, ino: e.ino, handle: o.handle, offset: 0, data: $0)
            }
            try? fs.release(ctx, ino: e.ino, handle: o.handle)
            fs.forget(ino: e.ino, count: 1)
        }
        _ = try? fs.mkdir(ctx, parent: root, name: "newdir", mode: 0o755)
        try? fs.unlink(ctx, parent: root, name: "big")
        try? fs.rename(ctx, parent: root, name: "dir", newParent: root, newName: "moved", flags: [])
        try? fs.rmdir(ctx, parent: root, name: "moved")
        try? fs.fsync(ctx, ino: root, handle: 0, dataOnly: false)
    }

    @Test func flippedBytesGiveErrorsNotCrashes() throws {
        let seed = ProcessInfo.processInfo.environment["XV6_FUZZ_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        var rng = SeededGenerator(seed: seed)
        let (image, targets) = try Self.makeImage()
        var mountErrors: [Errno: Int] = [:]
        var mounted = 0
        for iteration in 0..<400 {
            let (what, block) = targets.randomElement(using: &rng)!
            var bad = image
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let at = Int(block) * 4096 + Int.random(in: 0..<(what == "superblock" ? 128 : 4096), using: &rng)
                bad[at] ^= UInt8.random(in: 1...255, using: &rng)
            }
            let device = MemoryBlockDevice(image: bad)
            do {
                let fs = try module.mount(SuperBlock(cache: LRUBufferCache(device: device, capacity: 1024)))
                mounted += 1
                Self.exercise(fs)
                try? fs.destroy()
            } catch {
                let e = error as? Errno
                mountErrors[e ?? Errno(-1), default: 0] += 1
                #expect(e == .EUCLEAN || e == .EIO || e == .EINVAL,
                        "seed \(seed), iteration \(iteration), \(what): mount failed with \(error)")
            }
            let report = Checker(readOnly: true).check(device)
            _ = report.description
        }
        print("fuzz seed \(seed): \(mounted) mounts went ahead, mount errors \(mountErrors)")
    }
}
