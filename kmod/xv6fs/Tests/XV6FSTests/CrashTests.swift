@_spi(Host) import BentoKit
import BentoServices
import Foundation
import Testing
import XV6FS
import XV6Layout

/// A block device that records every write and flush, in order. Writes
/// come from the cache's writer thread too.
final class RecordingDevice: BlockDevice, @unchecked Sendable {
    enum Event { case write(UInt64, [UInt8]), flush }
    let base: MemoryBlockDevice
    private let lock = NSLock()
    private var recorded: [Event] = []
    var events: [Event] { lock.withLock { recorded } }
    init(_ base: MemoryBlockDevice) { self.base = base }
    var blockSize: Int { base.blockSize }
    var blockCount: UInt64 { base.blockCount }
    func read(block: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws { try base.read(block: block, into: buffer) }
    func write(block: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        try lock.withLock {
            recorded.append(.write(block, Array(buffer)))
            try base.write(block: block, from: buffer)
        }
    }
    func flush() throws { lock.withLock { recorded.append(.flush) } }

    /// The disk as a power cut after `cut` events could leave it: every
    /// write before the last flush, and any subset of the writes after it.
    func crashImage(from initial: [UInt8], cut: Int, rng: inout SeededGenerator) -> MemoryBlockDevice {
        let device = MemoryBlockDevice(image: initial)
        let events = self.events
        let lastFlush = events[..<cut].lastIndex { if case .flush = $0 { true } else { false } } ?? -1
        for (i, event) in events[..<cut].enumerated() {
            guard case .write(let block, let data) = event else { continue }
            if i < lastFlush || Bool.random(using: &rng) {
                try! data.withUnsafeBytes { try device.write(block: block, from: $0) }
            }
        }
        return device
    }
}

/// Crash consistency: cut the write record at many points, mount what a
/// power cut could have left, and check it.
@Suite struct CrashTests {
    struct Synced { let path: String; let data: [UInt8]; let returnedAt: Int }

    @Test(arguments: [11, 12] as [UInt64])
    func everyCutRecoversCleanWithFsyncedFilesIntact(seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        let base = MemoryBlockDevice(blockCount: 2048)
        try Format.format(base, inodeCount: 256, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        let initial = base.snapshot()
        let recorder = RecordingDevice(base)
        let h = try Harness(device: recorder)
        var synced: [Synced] = []
        var scratch: [String] = []
        try h.mkdir("keep")
        try h.mkdir("tmp")
        for i in 0..<80 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<4:  // a file that is fsynced and then left alone
                let path = "keep/f\(i)"
                let data = pattern(Int.random(in: 1...60_000, using: &rng), seed: rng.next())
                let ino = try h.writeFile(path, data)
                try h.fs.fsync(ctx, ino: ino, handle: 0, dataOnly: false)
                synced.append(Synced(path: path, data: data, returnedAt: recorder.events.count))
            case 4..<7:  // churn that is never synced on purpose
                let path = "tmp/s\(i)"
                try h.writeFile(path, pattern(Int.random(in: 1...120_000, using: &rng), seed: rng.next()))
                scratch.append(path)
            case 7:
                if let victim = scratch.randomElement(using: &rng) {
                    try h.fs.unlink(ctx, parent: try h.resolve("tmp"), name: FileName(String(victim.dropFirst(4))))
                    scratch.removeAll { $0 == victim }
                }
            case 8:
                if let victim = scratch.randomElement(using: &rng) {
                    let renamed = "tmp/r\(i)"
                    let tmp = try h.resolve("tmp")
                    try h.fs.rename(ctx, parent: tmp, name: FileName(String(victim.dropFirst(4))), newParent: tmp,
                                    newName: FileName(String(renamed.dropFirst(4))), flags: [])
                    scratch.removeAll { $0 == victim }
                    scratch.append(renamed)
                }
            default:
                try h.mkdir("tmp/d\(i)")
            }
        }
        let total = recorder.events.count
        var cuts = (0..<150).map { _ in Int.random(in: 0...total, using: &rng) }
        cuts += synced.map(\.returnedAt) + synced.map { max(0, $0.returnedAt - 1) } + [total]
        for cut in cuts {
            let device = recorder.crashImage(from: initial, cut: cut, rng: &rng)
            let after = try Harness(device: device)
            for file in synced where file.returnedAt <= cut {
                #expect(try after.readFile(file.path) == file.data, "seed \(seed), cut \(cut)/\(total): \(file.path)")
            }
            try after.fs.destroy()
            try expectClean(device, "seed \(seed), cut \(cut)/\(total)")
        }
    }
}
