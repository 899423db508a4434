@_spi(Host) import BentoKit
import Dispatch
import Foundation
import Testing
import XV6FS
import XV6Layout

/// Calls from several threads at once, as the FUSE loop will make them.
@Suite struct ConcurrencyTests {
    @Test func threadsWorkingSideBySideLeaveAConsistentFileSystem() throws {
        let h = try Harness.fresh(blocks: 16384, inodes: 8192)
        let shared = try h.mkdir("shared")
        let workers = 4
        let dirs = try (0..<workers).map { try h.mkdir("w\($0)") }
        let unexpected = Counter()
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let fs = h.fs
            var rng = SeededGenerator(seed: UInt64(100 + w))
            for i in 0..<300 {
                do {
                    // Own files: written, read back, some removed.
                    let data = pattern(Int.random(in: 1...30_000, using: &rng), seed: UInt64(w * 1000 + i))
                    let (e, o) = try fs.create(ctx, parent: dirs[w], name: FileName("f\(i)"), mode: 0o644, flags: OpenFlags.readWrite)
                    _ = try data.withUnsafeBytes { try fs.write(ctx, ino: e.ino, handle: o.handle, offset: 0, data: $0) }
                    var back = [UInt8](repeating: 0, count: data.count)
                    _ = try back.withUnsafeMutableBytes { try fs.read(ctx, ino: e.ino, handle: o.handle, offset: 0, into: $0) }
                    if back != data { unexpected.add("worker \(w) file \(i): read back differs") }
                    try fs.release(ctx, ino: e.ino, handle: o.handle)
                    fs.forget(ino: e.ino, count: 1)
                    if i % 3 == 0 { try fs.unlink(ctx, parent: dirs[w], name: FileName("f\(i)")) }
                    if i % 50 == 0 { try fs.fsync(ctx, ino: e.ino, handle: o.handle, dataOnly: false) }
                } catch {
                    unexpected.add("worker \(w) step \(i): \(error)")
                }
                // Shared names: races whose losers get EEXIST or ENOENT.
                let name = FileName("s\(Int.random(in: 0..<20, using: &rng))")
                do {
                    if Bool.random(using: &rng) {
                        let e = try fs.mkdir(ctx, parent: shared, name: name, mode: 0o755)
                        fs.forget(ino: e.ino, count: 1)
                    } else {
                        try fs.rmdir(ctx, parent: shared, name: name)
                    }
                } catch let e as Errno where e == .EEXIST || e == .ENOENT {
                } catch {
                    unexpected.add("worker \(w) shared: \(error)")
                }
            }
        }
        #expect(unexpected.messages.isEmpty, "\(unexpected.messages.prefix(5))")
        for w in 0..<workers {
            #expect(try h.list(dirs[w]).count == 200)
            #expect(try h.readFile("w\(w)/f1") == pattern(try h.readFile("w\(w)/f1").count, seed: UInt64(w * 1000 + 1)))
        }
        try h.fs.destroy()
        try expectClean(h.device, "after concurrent work")
    }
}

/// Collects messages from several threads.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var messages: [String] = []
    func add(_ message: String) { lock.withLock { messages.append(message) } }
}
