@_spi(Host) import BentoKit
@_spi(Testing) import BentoServices
import Glibc
import Testing
import XV6FS
import XV6Layout

/// The host's log, as a test reads it.
final class Messages: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var all: [String] = []
    init() { pthread_mutex_init(mutex, nil) }
    deinit { pthread_mutex_destroy(mutex); mutex.deallocate() }
    func append(_ message: String) {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        all.append(message)
    }
    var lines: [String] {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        return all
    }
}

/// A journal that dies like the process around it: at a chosen `record`
/// it stops after some blocks (as a SIGKILL would), and from then on
/// nothing reaches the shared memory any more.
final class DyingJournal: OperationJournal {
    let inner: SharedMemoryJournal
    /// The record call to die in (0: the next one), and after how many blocks.
    var dieIn: Int?
    var blocksBeforeDeath = 0
    private(set) var dead = false

    init(_ inner: SharedMemoryJournal) { self.inner = inner }

    var capacity: Int { inner.capacity }
    var checkpoint: UInt64 { inner.checkpoint }
    var pendingOperations: UInt64 { inner.pendingOperations }
    func record(_ blocks: [UInt64]) throws {
        guard !dead else { return }
        if let n = dieIn {
            if n == 0 {
                dead = true
                try inner.record(blocks, stoppingAfter: min(blocksBeforeDeath, blocks.count - 1))
                return
            }
            dieIn = n - 1
        }
        try inner.record(blocks)
    }
    func reset(checkpoint: UInt64) {
        guard !dead else { return }
        inner.reset(checkpoint: checkpoint)
    }
    func forEachPending(_ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) rethrows {
        try inner.forEachPending(body)
    }
}

/// What a tree holds, path by path.
enum Node: Equatable, CustomStringConvertible {
    case directory
    case file([UInt8])
    case symlink([UInt8])
    var description: String {
        switch self {
        case .directory: "dir"
        case .file(let bytes): "file(\(bytes.count) bytes)"
        case .symlink(let target): "symlink(\(String(decoding: target, as: UTF8.self)))"
        }
    }
}

extension Harness {
    /// Mounts a fresh journal-lending superblock on `device`; `adopting` a
    /// memfd left by a dead process.
    static func journaled(_ device: any BlockDevice, adopting fd: Int32? = nil, capacity: Int = 1024,
                          messages: Messages = Messages()) throws -> (Harness, SharedMemoryJournal) {
        let cache = LRUBufferCache(device: device, capacity: 4096)
        let journal = try fd.map { try SharedMemoryJournal(adopting: $0, cache: cache) }
            ?? SharedMemoryJournal(cache: cache, capacityBlocks: capacity)
        let superBlock = SuperBlock(cache: cache, journal: journal) { messages.append($0) }
        return (try Harness(device: device, superBlock: superBlock), journal)
    }

    /// Every path below the root and what it holds.
    func tree() throws -> [String: Node] {
        var out: [String: Node] = [:]
        func walk(_ dir: InodeNumber, _ prefix: String) throws {
            for name in try list(dir) {
                let e = try fs.lookup(ctx, parent: dir, name: FileName(name))
                defer { fs.forget(ino: e.ino, count: 1) }
                let path = prefix + name
                switch e.attributes.mode & FileMode.typeMask {
                case FileMode.directory:
                    out[path] = .directory
                    try walk(e.ino, path + "/")
                case FileMode.symlink: out[path] = .symlink(try fs.readlink(ctx, ino: e.ino))
                default: out[path] = .file(try readFile(e.ino))
                }
            }
        }
        try walk(root, "")
        return out
    }
}

/// The operation journal: every answered operation survives the death of
/// the process, with nothing committed since.
@Suite struct JournalTests {
    static func freshDevice() throws -> MemoryBlockDevice {
        let device = MemoryBlockDevice(blockCount: 8192)
        try Format.format(device, inodeCount: 512, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        return device
    }

    /// The process dies: its instance, cache and mapping are gone without
    /// a commit; the memfd lives on in the fd store, and a new process
    /// adopts it and mounts.
    static func crash(_ device: any BlockDevice, _ journal: SharedMemoryJournal,
                      messages: Messages = Messages()) throws -> Harness {
        BackgroundWriteDevice.waitForAllWrites()
        return try Harness.journaled(device, adopting: dup(journal.fd), messages: messages).0
    }

    /// Random operations of every kind, never synced unless `syncs`, kept
    /// in `model`.
    static func churn(_ h: Harness, _ model: inout [String: Node], steps: Int, syncs: Bool,
                      rng: inout SeededGenerator) throws {
        let dirs = ["d0", "d1", "d0/e"]
        func exists(_ dir: String) -> Bool { dir.isEmpty || model[dir] == .directory }
        func parentOf(_ path: String) -> String { path.split(separator: "/").dropLast().joined(separator: "/") }
        for step in 0..<steps {
            let dir = ([""] + dirs).filter(exists).map { $0.isEmpty ? "" : $0 + "/" }.randomElement(using: &rng)!
            let files = model.filter { if case .file = $0.value { true } else { false } }.keys.sorted()
            switch Int.random(in: 0..<20, using: &rng) {
            case 0..<6:  // a new file, small or spanning several transactions
                let path = dir + "f\(step)"
                let data = pattern(Int.random(in: 0...(step % 5 == 0 ? 300_000 : 9_000), using: &rng), seed: rng.next())
                try h.writeFile(path, data)
                model[path] = .file(data)
            case 6..<8:  // overwrite inside or past the end of a file
                guard let path = files.randomElement(using: &rng), case .file(var old) = model[path] else { continue }
                let offset = Int.random(in: 0...old.count, using: &rng)
                let data = pattern(Int.random(in: 1...20_000, using: &rng), seed: rng.next())
                try h.writeFile(path, data, at: UInt64(offset), create: false)
                if old.count < offset + data.count { old += [UInt8](repeating: 0, count: offset + data.count - old.count) }
                old.replaceSubrange(offset..<offset + data.count, with: data)
                model[path] = .file(old)
            case 8:  // truncate
                guard let path = files.randomElement(using: &rng), case .file(var old) = model[path] else { continue }
                let size = Int.random(in: 0...old.count + 5000, using: &rng)
                _ = try h.fs.setattr(ctx, ino: try h.resolve(path), SetAttributes(size: UInt64(size)), handle: nil)
                if size < old.count { old.removeLast(old.count - size) } else { old += [UInt8](repeating: 0, count: size - old.count) }
                model[path] = .file(old)
            case 9..<11:  // rename, over an existing file at times
                guard let path = files.randomElement(using: &rng) else { continue }
                let target = Bool.random(using: &rng) ? (files.randomElement(using: &rng) ?? path) : dir + "r\(step)"
                guard target != path else { continue }
                let (from, name) = try h.parent(path)
                let (to, newName) = try h.parent(target)
                try h.fs.rename(ctx, parent: from, name: name, newParent: to, newName: newName, flags: [])
                model[target] = model.removeValue(forKey: path)
            case 11..<13:
                guard let path = files.randomElement(using: &rng) else { continue }
                let (parent, name) = try h.parent(path)
                try h.fs.unlink(ctx, parent: parent, name: name)
                model[path] = nil
            case 13:
                let path = dir + "s\(step)"
                let target = Array("target-\(step)".utf8)
                let (parent, name) = try h.parent(path)
                let e = try h.fs.symlink(ctx, parent: parent, name: name, target: target)
                h.fs.forget(ino: e.ino, count: 1)
                model[path] = .symlink(target)
            case 14..<16:
                guard let path = dirs.first(where: { model[$0] == nil && exists(parentOf($0)) }) else { continue }
                try h.mkdir(path)
                model[path] = .directory
            case 16:  // remove an empty directory
                guard let path = dirs.reversed().first(where: { d in
                    model[d] == .directory && !model.keys.contains { $0.hasPrefix(d + "/") }
                }) else { continue }
                let (parent, name) = try h.parent(path)
                try h.fs.rmdir(ctx, parent: parent, name: name)
                model[path] = nil
            default:
                if syncs && Int.random(in: 0..<4, using: &rng) == 0 {
                    try h.fs.fsync(ctx, ino: root, handle: 0, dataOnly: false)
                }
            }
        }
    }

    @Test(arguments: [(1, 1024), (2, 1024), (3, 1024), (4, 40), (5, 40)] as [(UInt64, Int)])
    func everyAnsweredOperationSurvivesTheProcess(seed: UInt64, capacity: Int) throws {
        var rng = SeededGenerator(seed: seed)
        let device = try Self.freshDevice()
        let (h, journal) = try Harness.journaled(device, capacity: capacity)
        var model: [String: Node] = [:]
        try Self.churn(h, &model, steps: 250, syncs: seed % 2 == 0, rng: &rng)
        #expect(try h.tree() == model)
        let messages = Messages()
        let after = try Self.crash(device, journal, messages: messages)
        let back = try after.tree()
        #expect(back == model, "seed \(seed): \(Set(back.keys).symmetricDifference(model.keys).sorted())")
        #expect(messages.lines.contains { $0.contains("from the operation journal") }, "\(messages.lines)")
        // And it goes on: more work, another death.
        try Self.churn(after, &model, steps: 80, syncs: false, rng: &rng)
        let third = try Self.crash(device, after.superBlock.journal as! SharedMemoryJournal)
        #expect(try third.tree() == model)
        try third.fs.destroy()
        try expectClean(device, "seed \(seed)")
    }

    /// The control: without a journal the same death loses operations, so
    /// the test above does test something.
    @Test func withoutAJournalTheDeathLosesWork() throws {
        var rng = SeededGenerator(seed: 1)
        let device = try Self.freshDevice()
        let h = try Harness(device: device)
        var model: [String: Node] = [:]
        try Self.churn(h, &model, steps: 100, syncs: false, rng: &rng)
        let after = try Harness(device: device)
        #expect(try after.tree() != model)
        try after.fs.destroy()
        try expectClean(device, "without a journal")
    }

    /// A death inside `record`, at each point of an operation: the new
    /// process sees the state before that operation, and a clean disk.
    @Test(arguments: 0..<12)
    func aDeathInsideRecordLeavesTheOperationOut(trial: Int) throws {
        var rng = SeededGenerator(seed: 100 + UInt64(trial))
        let device = try Self.freshDevice()
        let cache = LRUBufferCache(device: device, capacity: 4096)
        let shared = try SharedMemoryJournal(cache: cache)
        let journal = DyingJournal(shared)
        let h = try Harness(device: device, superBlock: SuperBlock(cache: cache, journal: journal))
        var model: [String: Node] = [:]
        try Self.churn(h, &model, steps: 60, syncs: false, rng: &rng)
        try h.writeFile("victim", pattern(5000, seed: 7))
        model["victim"] = .file(pattern(5000, seed: 7))
        let before = model
        // One operation, one transaction, dying after some of its blocks.
        journal.dieIn = 0
        journal.blocksBeforeDeath = trial / 4
        switch trial % 4 {
        case 0: _ = try h.fs.create(ctx, parent: root, name: "new", mode: 0o644, flags: OpenFlags.readWrite)
        case 1: try h.fs.rename(ctx, parent: root, name: "victim", newParent: root, newName: "moved", flags: [])
        case 2: try h.fs.unlink(ctx, parent: root, name: "victim")
        default: try h.mkdir("newdir")
        }
        #expect(journal.dead)
        let after = try Self.crash(device, shared)
        #expect(try after.tree() == before, "trial \(trial)")
        try after.fs.destroy()
        try expectClean(device, "trial \(trial)")
    }

    @Test func aCommitEmptiesTheJournal() throws {
        let device = try Self.freshDevice()
        let (h, journal) = try Harness.journaled(device)
        try h.mkdir("a")
        try h.writeFile("a/x", pattern(10_000, seed: 1))
        #expect(journal.pendingOperations > 0)
        try h.fs.fsync(ctx, ino: root, handle: 0, dataOnly: false)
        #expect(journal.pendingOperations == 0)
        let messages = Messages()
        let after = try Self.crash(device, journal, messages: messages)
        #expect(!messages.lines.contains { $0.contains("operation journal") }, "\(messages.lines)")
        #expect(try after.readFile("a/x") == pattern(10_000, seed: 1))
        // Three operations after the last commit come back, and are counted.
        try after.fs.sync()
        for name in ["p", "q", "r"] {
            let (e, open) = try after.fs.create(ctx, parent: root, name: FileName(name), mode: 0o644, flags: 0)
            try after.fs.release(ctx, ino: e.ino, handle: open.handle)
            after.fs.forget(ino: e.ino, count: 1)
        }
        let third = Messages()
        let last = try Self.crash(device, after.superBlock.journal as! SharedMemoryJournal, messages: third)
        #expect(third.lines.contains { $0.hasSuffix("blocks of 3 operations from the operation journal") }, "\(third.lines)")
        #expect(Set(try last.list(root)) == ["a", "p", "q", "r"])
    }

    /// A journal the disk has moved past (an instance without it committed
    /// in between) is ignored, never applied over newer data.
    @Test func aStaleJournalIsIgnored() throws {
        let device = try Self.freshDevice()
        let (h, journal) = try Harness.journaled(device)
        try h.writeFile("lost", pattern(3000, seed: 1))
        try h.writeFile("shared", pattern(3000, seed: 2))
        // The process dies; a host without journals mounts and commits.
        BackgroundWriteDevice.waitForAllWrites()
        let plain = try Harness(device: device)
        try plain.writeFile("kept", pattern(3000, seed: 3))
        try plain.fs.sync()
        // It dies too; a host that adopts the old memfd mounts.
        let messages = Messages()
        let after = try Self.crash(device, journal, messages: messages)
        #expect(messages.lines.contains { $0.contains("another state of the disk: ignored") }, "\(messages.lines)")
        #expect(try after.list(root) == ["kept"])
        try after.fs.destroy()
        try expectClean(device, "stale journal")
    }

    /// An upgrade carries the journal on, also from a version that kept none.
    @Test(arguments: [true, false], [Xv6Module.stateFormat, Xv6Module.copiedStateFormat])
    func upgradesKeepTheJournalWhole(exporterJournaled: Bool, format: StateFormat) throws {
        var rng = SeededGenerator(seed: 9)
        let device = try Self.freshDevice()
        let cache = LRUBufferCache(device: device, capacity: 4096)
        let journal = try SharedMemoryJournal(cache: cache)
        let first = SuperBlock(cache: cache, journal: exporterJournaled ? journal : nil)
        let h = try Harness(device: device, superBlock: first)
        var model: [String: Node] = [:]
        try Self.churn(h, &model, steps: 80, syncs: false, rng: &rng)
        let state = try h.fs.exportState(format: format)
        let second = SuperBlock(cache: cache, journal: journal)
        // Format 3 leaves the table to the host, which keeps it.
        if format == Xv6Module.stateFormat { second.references.replace(with: first.references.snapshot()) }
        let next = Harness(device: device, superBlock: second, fs: try module.restore(second, from: state))
        try Self.churn(next, &model, steps: 80, syncs: false, rng: &rng)
        let after = try Self.crash(device, journal)
        #expect(try after.tree() == model)
        try after.fs.destroy()
        try expectClean(device, "upgrade in \(format), exporter journaled: \(exporterJournaled)")
    }

    /// What the kernel still holds from the dead process: its file handles
    /// and lookup counts.
    @Test func theKernelsOldHandlesAndCountsDoNoHarm() throws {
        let device = try Self.freshDevice()
        let (h, journal) = try Harness.journaled(device)
        let (a, openA) = try h.fs.create(ctx, parent: root, name: "a", mode: 0o644, flags: OpenFlags.readWrite)
        #expect(openA.handle >= 1 << 32)
        _ = try pattern(5000, seed: 1).withUnsafeBytes { try h.fs.write(ctx, ino: a.ino, handle: openA.handle, offset: 0, data: $0) }
        let dirHandle = try h.fs.opendir(ctx, ino: root, flags: 0)

        let after = try Self.crash(device, journal)
        let fs = after.fs
        let (b, openB) = try fs.create(ctx, parent: root, name: "b", mode: 0o644, flags: OpenFlags.readWrite)
        #expect(openB.handle != openA.handle && openB.handle != dirHandle)
        // Old handles work by inode number; releasing them closes nothing new.
        var back = [UInt8](repeating: 0, count: 5000)
        #expect(try back.withUnsafeMutableBytes { try fs.read(ctx, ino: a.ino, handle: openA.handle, offset: 0, into: $0) } == 5000)
        #expect(back == pattern(5000, seed: 1))
        _ = try ([1, 2, 3] as [UInt8]).withUnsafeBytes { try fs.write(ctx, ino: a.ino, handle: openA.handle, offset: 5000, data: $0) }
        try fs.fsync(ctx, ino: a.ino, handle: openA.handle, dataOnly: false)
        var names: [String] = []
        try fs.readdir(ctx, ino: root, handle: dirHandle, offset: 0, plus: true) { names.append($0.name.description); return true }
        #expect(Set(names) == [".", "..", "a", "b"])
        #expect(errno { try fs.release(ctx, ino: a.ino, handle: openA.handle) } == .EBADF)
        #expect(errno { try fs.releasedir(ctx, ino: root, handle: dirHandle) } == .EBADF)
        _ = try ([9] as [UInt8]).withUnsafeBytes { try fs.write(ctx, ino: b.ino, handle: openB.handle, offset: 0, data: $0) }
        // Forgets for counts this instance never handed out.
        fs.forget(ino: a.ino, count: 7)
        fs.forget(ino: 400, count: 1)  // a free inode
        fs.forget(ino: 1 << 40, count: 1)  // no inode at all
        #expect(try fs.getattr(ctx, ino: a.ino).size == 5003)
        #expect(try after.readFile("a").count == 5003)
        try fs.release(ctx, ino: b.ino, handle: openB.handle)
        fs.forget(ino: b.ino, count: 1)
        try fs.destroy()
        try expectClean(device, "old handles")
    }
}
