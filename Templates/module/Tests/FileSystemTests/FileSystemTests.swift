@_spi(Host) import BentoKit
import BentoServices
import Testing
@testable import @MODULE@

// The module driven in process, the way the host and the kernel drive it:
// no FUSE, no daemon (`swift test`).

let ctx = RequestContext.root
let root: InodeNumber = 1

/// A module mounted on a RAM device.
struct Mounted {
    let device: MemoryBlockDevice
    let superBlock: SuperBlock
    let fs: any FileSystem

    init(device: MemoryBlockDevice = MemoryBlockDevice(blockCount: 4096)) throws {
        self.device = device
        superBlock = SuperBlock(cache: LRUBufferCache(device: device, capacity: 1024))
        fs = try Module().mount(superBlock)
    }

    /// Unmounts and mounts the device again, with a cold cache.
    func remount() throws -> Mounted {
        try fs.destroy()
        return try Mounted(device: device)
    }

    /// The helpers forget each reference they get, as the kernel would.
    func lookup(_ path: String) throws -> InodeNumber {
        try path.split(separator: "/").reduce(root) { parent, name in
            let ino = try fs.lookup(ctx, parent: parent, name: FileName(String(name))).ino
            fs.forget(ino: ino, count: 1)
            return ino
        }
    }

    func create(_ parent: InodeNumber, _ name: String, _ bytes: [UInt8] = [], at offset: UInt64 = 0) throws -> InodeNumber {
        let (entry, open) = try fs.create(ctx, parent: parent, name: FileName(name), mode: 0o644, flags: OpenFlags.readWrite)
        if !bytes.isEmpty { try write(entry.ino, open.handle, bytes, at: offset) }
        try fs.release(ctx, ino: entry.ino, handle: open.handle)
        fs.forget(ino: entry.ino, count: 1)
        return entry.ino
    }

    func write(_ ino: InodeNumber, _ handle: FileHandle, _ bytes: [UInt8], at offset: UInt64 = 0) throws {
        let n = try bytes.withUnsafeBytes { try fs.write(ctx, ino: ino, handle: handle, offset: offset, data: $0) }
        #expect(n == bytes.count)
    }

    func read(_ ino: InodeNumber, count: Int = 1 << 20, at offset: UInt64 = 0) throws -> [UInt8] {
        let handle = try fs.open(ctx, ino: ino, flags: OpenFlags.readOnly).handle
        defer { try? fs.release(ctx, ino: ino, handle: handle) }
        var buffer = [UInt8](repeating: 0xAA, count: count)
        let n = try buffer.withUnsafeMutableBytes { try fs.read(ctx, ino: ino, handle: handle, offset: offset, into: $0) }
        return Array(buffer[..<n])
    }

    func names(_ dir: InodeNumber) throws -> [String] {
        let handle = try fs.opendir(ctx, ino: dir, flags: 0)
        defer { try? fs.releasedir(ctx, ino: dir, handle: handle) }
        var names: [String] = []
        try fs.readdir(ctx, ino: dir, handle: handle, offset: 0, plus: false) { names.append($0.name.description); return true }
        return names
    }

    var freeBlocks: UInt64 { get throws { try fs.statfs(ctx, ino: root).freeBlocks } }
}

func pattern(_ count: Int, seed: UInt32 = 1) -> [UInt8] {
    var x = seed
    return (0..<count).map { _ in x = x &* 1103515245 &+ 12345; return UInt8(truncatingIfNeeded: x >> 16) }
}

@Test func formatsAnEmptyDeviceAndKeepsWhatItStores() throws {
    let m = try Mounted()
    #expect(try m.names(root) == [".", ".."])
    let dir = try m.fs.mkdir(ctx, parent: root, name: "docs", mode: 0o755).ino
    let file = try m.create(dir, "note", Array("hello\n".utf8))
    _ = try m.fs.symlink(ctx, parent: root, name: "link", target: Array("docs/note".utf8))
    let again = try m.remount()
    #expect(try again.names(root) == [".", "..", "docs", "link"])
    #expect(try again.lookup("docs/note") == file)
    #expect(try again.read(file) == Array("hello\n".utf8))
    #expect(try again.fs.readlink(ctx, ino: again.lookup("link")) == Array("docs/note".utf8))
    #expect(try again.fs.getattr(ctx, ino: dir).nlink == 2)
    #expect(try again.fs.getattr(ctx, ino: root).nlink == 3)
}

@Test func refusesADeviceWithAnotherFileSystem() throws {
    let device = MemoryBlockDevice(blockCount: 4096)
    try [UInt8](repeating: 7, count: 4096).withUnsafeBytes { try device.write(block: 0, from: $0) }
    #expect(throws: Errno.EINVAL) { try Mounted(device: device) }
}

@Test func namesFollowPOSIXRules() throws {
    let m = try Mounted()
    let a = try m.fs.mkdir(ctx, parent: root, name: "a", mode: 0o755).ino
    _ = try m.create(a, "f", [1, 2, 3])
    #expect(throws: Errno.EEXIST) { try m.create(a, "f") }
    #expect(throws: Errno.ENOTEMPTY) { try m.fs.rmdir(ctx, parent: root, name: "a") }
    #expect(throws: Errno.EISDIR) { try m.fs.unlink(ctx, parent: root, name: "a") }
    #expect(throws: Errno.ENAMETOOLONG) { try m.create(a, String(repeating: "x", count: 251)) }
    // Rename within and across directories, over a file, not into itself.
    _ = try m.create(root, "g", [9])
    try m.fs.rename(ctx, parent: a, name: "f", newParent: root, newName: "g", flags: [])
    #expect(try m.read(m.lookup("g")) == [1, 2, 3])
    #expect(try m.names(a) == [".", ".."])
    #expect(throws: Errno.EINVAL) {
        try m.fs.rename(ctx, parent: root, name: "a", newParent: a, newName: "b", flags: [])
    }
    _ = try m.create(root, "h")
    #expect(throws: Errno.EEXIST) {
        try m.fs.rename(ctx, parent: root, name: "g", newParent: root, newName: "h", flags: .noReplace)
    }
    let b = try m.fs.mkdir(ctx, parent: root, name: "b", mode: 0o755).ino
    try m.fs.rename(ctx, parent: root, name: "a", newParent: b, newName: "a2", flags: [])
    #expect(try m.fs.lookup(ctx, parent: m.lookup("b/a2"), name: "..").ino == b)
    #expect(try m.fs.getattr(ctx, ino: b).nlink == 3)
    #expect(try m.fs.getattr(ctx, ino: root).nlink == 3)
    // Hard links.
    let g = try m.lookup("g")
    _ = try m.fs.link(ctx, ino: g, newParent: b, newName: "g2")
    try m.fs.unlink(ctx, parent: root, name: "g")
    #expect(try m.read(m.lookup("b/g2")) == [1, 2, 3])
    try m.fs.rmdir(ctx, parent: b, name: "a2")
    #expect(try m.names(b) == [".", "..", "g2"])
}

@Test func largeAndSparseFilesAndTruncate() throws {
    let m = try Mounted(device: MemoryBlockDevice(blockCount: 8192))
    _ = try m.create(root, "first")   // the root's first block of records stays
    let before = try m.freeBlocks
    // Past the direct and the single indirect blocks (about 4 MiB).
    let data = pattern(5 << 20)
    let file = try m.create(root, "big", data)
    #expect(try m.read(file, count: data.count + 10) == data)
    // A hole reads as zeroes.
    let sparse = try m.create(root, "sparse", [1], at: 3 << 20)
    #expect(try m.read(sparse, count: 8, at: 1 << 20) == [UInt8](repeating: 0, count: 8))
    #expect(try m.fs.getattr(ctx, ino: sparse).size == (3 << 20) + 1)
    // Shrinking zeroes what a later extension shows; removing frees all.
    _ = try m.fs.setattr(ctx, ino: file, SetAttributes(size: 10), handle: nil)
    _ = try m.fs.setattr(ctx, ino: file, SetAttributes(size: 100), handle: nil)
    #expect(try m.read(file) == Array(data[..<10]) + [UInt8](repeating: 0, count: 90))
    try m.fs.unlink(ctx, parent: root, name: "big")
    try m.fs.unlink(ctx, parent: root, name: "sparse")
    #expect(try m.freeBlocks == before)
    #expect(try m.remount().freeBlocks == before)
}

@Test func fullDeviceStoresWhatFits() throws {
    let m = try Mounted(device: MemoryBlockDevice(blockCount: 512))
    let (entry, open) = try m.fs.create(ctx, parent: root, name: "fill", mode: 0o644, flags: OpenFlags.readWrite)
    let data = pattern(4 << 20)
    let n = try data.withUnsafeBytes { try m.fs.write(ctx, ino: entry.ino, handle: open.handle, offset: 0, data: $0) }
    #expect(n > 0 && n < data.count)
    #expect(try m.fs.getattr(ctx, ino: entry.ino).size == UInt64(n))
    #expect(try m.freeBlocks == 0)
    #expect(throws: Errno.ENOSPC) {
        try [UInt8](repeating: 1, count: 4096).withUnsafeBytes {
            try m.fs.write(ctx, ino: entry.ino, handle: open.handle, offset: UInt64(n), data: $0)
        }
    }
    try m.fs.release(ctx, ino: entry.ino, handle: open.handle)
}

@Test func anUnlinkedOpenFileLivesUntilItsLastClose() throws {
    let m = try Mounted()
    _ = try m.create(root, "first")   // the root's first block of records stays
    let before = try m.freeBlocks
    let (entry, open) = try m.fs.create(ctx, parent: root, name: "tmp", mode: 0o644, flags: OpenFlags.readWrite)
    try m.write(entry.ino, open.handle, pattern(20000))
    try m.fs.unlink(ctx, parent: root, name: "tmp")
    var buffer = [UInt8](repeating: 0, count: 20000)
    _ = try buffer.withUnsafeMutableBytes { try m.fs.read(ctx, ino: entry.ino, handle: open.handle, offset: 0, into: $0) }
    #expect(buffer == pattern(20000))
    try m.fs.release(ctx, ino: entry.ino, handle: open.handle)
    m.fs.forget(ino: entry.ino, count: 1)
    #expect(try m.freeBlocks == before)
}

@Test func readdirCookiesSurviveChanges() throws {
    let m = try Mounted()
    for i in 0..<40 { _ = try m.create(root, "f\(i)") }
    let handle = try m.fs.opendir(ctx, ino: root, flags: 0)
    var seen: [String] = []
    var cookie: UInt64 = 0
    try m.fs.readdir(ctx, ino: root, handle: handle, offset: 0, plus: false) { e in
        seen.append(e.name.description); cookie = e.nextOffset; return seen.count < 12
    }
    try m.fs.unlink(ctx, parent: root, name: "f0")     // already listed
    try m.fs.unlink(ctx, parent: root, name: "f30")    // not yet listed
    try m.fs.readdir(ctx, ino: root, handle: handle, offset: cookie, plus: false) { e in
        seen.append(e.name.description); return true
    }
    try m.fs.releasedir(ctx, ino: root, handle: handle)
    let expected = [".", ".."] + (0..<40).filter { $0 != 30 }.map { "f\($0)" }
    #expect(seen == expected)
}

@Test func handoverKeepsOpenFilesAndRefusesBadState() throws {
    let m = try Mounted()
    let (entry, open) = try m.fs.create(ctx, parent: root, name: "held", mode: 0o644, flags: OpenFlags.readWrite)
    try m.write(entry.ino, open.handle, Array("before".utf8))
    let module = Module()
    let format = try #require(module.descriptor.handoverFormat(to: module.descriptor))
    let state = try m.fs.exportState(format: format)

    // Bad states are refused, and the old instance serves on.
    var otherVolume = state
    otherVolume.bytes[0] ^= 1
    #expect(throws: Errno.EINVAL) { try module.restore(m.superBlock, from: otherVolume) }
    var trailing = state
    trailing.bytes.append(0)
    #expect(throws: Errno.EINVAL) { try module.restore(m.superBlock, from: trailing) }
    #expect(try m.read(entry.ino) == Array("before".utf8))

    // The next instance over the same superblock: the handle works there.
    let next = try module.restore(m.superBlock, from: state)
    let upgraded = Mounted(device: m.device, superBlock: m.superBlock, fs: next)
    try upgraded.write(entry.ino, open.handle, Array("after!".utf8))
    #expect(try upgraded.read(entry.ino) == Array("after!".utf8))
    #expect(try upgraded.freeBlocks == m.freeBlocks)
    try next.release(ctx, ino: entry.ino, handle: open.handle)
    #expect(throws: Errno.EBADF) { try next.release(ctx, ino: entry.ino, handle: open.handle) }
}

@Test func versionComesFromTheModuleName() {
    #expect(Module().descriptor.version != SemanticVersion(0, 0, 0))
    #expect(Module().descriptor.fileSystem == "@NAME@")
}

extension Mounted {
    init(device: MemoryBlockDevice, superBlock: SuperBlock, fs: any FileSystem) {
        self.device = device; self.superBlock = superBlock; self.fs = fs
    }
}
