@_spi(Host) import BentoKit
import BentoServices
import Testing
import XV6FS
import XV6Layout

let root: InodeNumber = 1
let ctx = RequestContext.root
let module = Xv6Module(version: SemanticVersion(1, 0, 0))

/// A mounted xv6fs on a block device, driven the way the kernel would drive
/// it: every reference an answer hands out is forgotten again.
final class Harness: @unchecked Sendable {
    let device: any BlockDevice
    let superBlock: SuperBlock
    let fs: any FileSystem

    init(device: any BlockDevice) throws {
        self.device = device
        superBlock = SuperBlock(cache: LRUBufferCache(device: device, capacity: 4096))
        fs = try module.mount(superBlock)
    }

    /// Mounts with a superblock of the caller's (one lending a journal, say).
    init(device: any BlockDevice, superBlock: SuperBlock) throws {
        self.device = device
        self.superBlock = superBlock
        fs = try module.mount(superBlock)
    }

    /// Carries on from `fs` (an upgraded instance, say).
    init(device: any BlockDevice, superBlock: SuperBlock, fs: any FileSystem) {
        self.device = device
        self.superBlock = superBlock
        self.fs = fs
    }

    /// A freshly formatted RAM device of `blocks` blocks.
    static func fresh(blocks: UInt64 = 8192, inodes: UInt32? = nil) throws -> Harness {
        let device = MemoryBlockDevice(blockCount: blocks)
        try Format.format(device, inodeCount: inodes, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        return try Harness(device: device)
    }

    /// Unmounts and mounts the same device again, with a cold cache.
    func remount() throws -> Harness {
        try fs.destroy()
        return try Harness(device: device)
    }

    // MARK: Path-level helpers

    func split(_ path: String) -> [FileName] {
        path.split(separator: "/").map { FileName(String($0)) }
    }

    func resolve(_ path: String) throws -> InodeNumber {
        var ino = root
        for name in split(path) {
            let e = try fs.lookup(ctx, parent: ino, name: name)
            fs.forget(ino: e.ino, count: 1)
            ino = e.ino
        }
        return ino
    }

    func parent(_ path: String) throws -> (InodeNumber, FileName) {
        var parts = split(path)
        let last = parts.removeLast()
        return (try resolve(parts.map(\.description).joined(separator: "/")), last)
    }

    @discardableResult
    func mkdir(_ path: String, mode: UInt32 = 0o755) throws -> InodeNumber {
        let (dir, name) = try parent(path)
        let e = try fs.mkdir(ctx, parent: dir, name: name, mode: mode)
        fs.forget(ino: e.ino, count: 1)
        return e.ino
    }

    /// An empty file in `dir`, created, released and forgotten again as
    /// the kernel would after `touch`.
    func createEmpty(in dir: InodeNumber, _ name: String) throws {
        let (e, open) = try fs.create(ctx, parent: dir, name: FileName(name), mode: 0o644, flags: 0)
        try fs.release(ctx, ino: e.ino, handle: open.handle)
        fs.forget(ino: e.ino, count: 1)
    }

    @discardableResult
    func writeFile(_ path: String, _ bytes: [UInt8], at offset: UInt64 = 0, create: Bool = true) throws -> InodeNumber {
        let (dir, name) = try parent(path)
        let ino: InodeNumber
        let fh: FileHandle
        if create, (try? fs.lookup(ctx, parent: dir, name: name)).map({ fs.forget(ino: $0.ino, count: 1) }) == nil {
            let (e, open) = try fs.create(ctx, parent: dir, name: name, mode: 0o644, flags: OpenFlags.readWrite)
            ino = e.ino; fh = open.handle
            fs.forget(ino: ino, count: 1)
        } else {
            ino = try resolve(path)
            fh = try fs.open(ctx, ino: ino, flags: OpenFlags.readWrite).handle
        }
        defer { try? fs.release(ctx, ino: ino, handle: fh) }
        let written = try bytes.withUnsafeBytes { try fs.write(ctx, ino: ino, handle: fh, offset: offset, data: $0) }
        #expect(written == bytes.count)
        return ino
    }

    func readFile(_ ino: InodeNumber) throws -> [UInt8] {
        let size = Int(try fs.getattr(ctx, ino: ino).size)
        let fh = try fs.open(ctx, ino: ino, flags: OpenFlags.readOnly).handle
        defer { try? fs.release(ctx, ino: ino, handle: fh) }
        var bytes = [UInt8](repeating: 0xEE, count: size)
        let n = try bytes.withUnsafeMutableBytes { try fs.read(ctx, ino: ino, handle: fh, offset: 0, into: $0) }
        #expect(n == size)
        return bytes
    }

    func readFile(_ path: String) throws -> [UInt8] { try readFile(try resolve(path)) }

    /// All names in a directory except "." and "..", listed `batch` at a time.
    func list(_ ino: InodeNumber, batch: Int = 1000) throws -> [String] {
        let fh = try fs.opendir(ctx, ino: ino, flags: 0)
        defer { try? fs.releasedir(ctx, ino: ino, handle: fh) }
        var names: [String] = []
        var offset: UInt64 = 0
        while true {
            var got = 0
            try fs.readdir(ctx, ino: ino, handle: fh, offset: offset, plus: false) { e in
                guard got < batch else { return false }
                got += 1
                offset = e.nextOffset
                if e.name.bytes != [0x2E] && e.name.bytes != [0x2E, 0x2E] { names.append(e.name.description) }
                return true
            }
            if got < batch { return names }
        }
    }

    func statfs() throws -> FileSystemStats { try fs.statfs(ctx, ino: root) }
}

/// The errno `body` threw, or nil if it returned.
func errno(_ body: () throws -> Void) -> Errno? {
    do { try body(); return nil } catch { return error as? Errno ?? Errno(-1) }
}

struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
    var g = SeededGenerator(seed: seed)
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        let v = g.next()
        for k in 0..<8 where i + k < count { out[i + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
        i += 8
    }
    return out
}
