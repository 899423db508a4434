import BentoKit
@_spi(Testing) import BentoServices
import CBentoServices
import Glibc
import Testing

@Suite struct SharedMemoryJournalTests {
    let device = MemoryBlockDevice(blockCount: 256)
    let cache: LRUBufferCache

    init() { cache = LRUBufferCache(device: device, capacity: 256) }

    /// Fills `block` in the cache with `byte` (a dirty, never written block).
    func set(_ block: UInt64, _ byte: UInt8) throws {
        try cache.withMutableBlock(block, fill: .zero) { $0.initializeMemory(as: UInt8.self, repeating: byte) }
    }

    /// What the journal would give back: block to its first byte, checking
    /// every byte of each image is the same.
    func contents(_ journal: SharedMemoryJournal) -> [UInt64: UInt8] {
        var out: [UInt64: UInt8] = [:]
        journal.forEachPending { block, data in
            #expect(data.count == 4096)
            #expect(data.allSatisfy { $0 == data[0] }, "block \(block) is torn")
            #expect(out.updateValue(data[0], forKey: block) == nil, "block \(block) twice")
        }
        return out
    }

    /// A second journal on the same memfd, as a restarted process gets it.
    func adopt(_ journal: SharedMemoryJournal) throws -> SharedMemoryJournal {
        try SharedMemoryJournal(adopting: dup(journal.fd), cache: cache)
    }

    @Test func recordsTheLatestImageOfEachBlockAndSurvivesAdoption() throws {
        let journal = try SharedMemoryJournal(cache: cache, capacityBlocks: 16)
        #expect(contents(journal).isEmpty)
        try set(10, 1); try set(11, 2)
        try journal.record([10, 11])
        try set(10, 3); try set(12, 4)
        try journal.record([10, 12, 10])  // a block named twice counts once
        #expect(contents(journal) == [10: 3, 11: 2, 12: 4])
        #expect(journal.pendingOperations == 2)
        #expect(journal.pendingBlockCount == 3)
        // Later changes in the cache are not in the journal until recorded.
        try set(11, 9)
        let adopted = try adopt(journal)
        #expect(contents(adopted) == [10: 3, 11: 2, 12: 4])
        #expect(adopted.pendingOperations == 2)
        // The adopted journal carries on.
        try adopted.record([11])
        #expect(contents(try adopt(adopted)) == [10: 3, 11: 9, 12: 4])
    }

    @Test func resetEmptiesItAndKeepsTheCheckpoint() throws {
        let journal = try SharedMemoryJournal(cache: cache, capacityBlocks: 4)
        #expect(journal.checkpoint == 0)
        for round in 0..<5 {
            for b in 0..<4 as Range<UInt64> { try set(20 + b, UInt8(round * 10) + UInt8(b)) }
            try journal.record([20, 21, 22, 23])
            try journal.record([21])
            #expect(contents(journal).count == 4)
            journal.reset(checkpoint: 100 + UInt64(round))
            #expect(contents(journal).isEmpty)
            #expect(journal.pendingOperations == 0)
            let adopted = try adopt(journal)
            #expect(contents(adopted).isEmpty)
            #expect(adopted.checkpoint == 100 + UInt64(round))
        }
        // Slots reused after a reset show only what was recorded since.
        try set(30, 7)
        try journal.record([30])
        #expect(contents(try adopt(journal)) == [30: 7])
    }

    @Test func refusesWhatDoesNotFitAndChangesNothing() throws {
        let journal = try SharedMemoryJournal(cache: cache, capacityBlocks: 3)
        for b in 40..<45 as Range<UInt64> { try set(b, UInt8(b)) }
        try journal.record([40, 41])
        #expect(throws: Errno.ENOSPC) { try journal.record([40, 42, 43]) }
        #expect(throws: Errno.EINVAL) { try journal.record([1 << 40]) }
        #expect(contents(journal) == [40: 40, 41: 41])
        try journal.record([40, 42, 41, 42])  // fits: one new block
        #expect(contents(try adopt(journal)) == [40: 40, 41: 41, 42: 42])
    }

    /// A process killed in the middle of `record`, at every point: the
    /// journal comes back at the end of the previous operation, and goes on
    /// correctly from there.
    @Test func aDeathInsideRecordLeavesTheLastCompleteOperation() throws {
        let blocks: [UInt64] = [50, 51, 52, 53]
        for stop in 0...blocks.count {
            let journal = try SharedMemoryJournal(cache: cache, capacityBlocks: 8)
            try set(50, 1); try set(51, 1)
            try journal.record([50, 51])
            try set(50, 2); try set(52, 2)
            try journal.record([50, 52])
            let before = contents(journal)
            // The dying operation changes two known blocks and two new ones.
            for b in blocks { try set(b, 3) }
            try journal.record(blocks, stoppingAfter: stop)
            let adopted = try adopt(journal)
            if stop == blocks.count {
                #expect(contents(adopted) == [50: 3, 51: 3, 52: 3, 53: 3], "stopped after \(stop)")
            } else {
                #expect(contents(adopted) == before, "stopped after \(stop)")
                #expect(adopted.pendingOperations == 2)
            }
            // The next operation gets the dead one's number: what the dead
            // one wrote must not become current with it.
            try set(51, 4)
            try adopted.record([51])
            var expected = stop == blocks.count ? [50: 3, 51: 3, 52: 3, 53: 3] : before
            expected[51] = 4
            #expect(contents(try adopt(adopted)) == expected, "stopped after \(stop), then one more")
        }
    }

    /// Random operations with a death now and then, against a model.
    @Test func randomOperationsAndDeathsMatchAModel() throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        var rng = SplitMix(state: seed)
        var journal = try SharedMemoryJournal(cache: cache, capacityBlocks: 24)
        var model: [UInt64: UInt8] = [:]
        var value: UInt8 = 0
        for _ in 0..<2000 {
            let n = Int.random(in: 1...6, using: &rng)
            let blocks = (0..<n).map { _ in UInt64.random(in: 60..<90, using: &rng) }
            value &+= 1
            for b in blocks { try set(b, value) }
            let fits = Set(model.keys).union(blocks).count <= 24
            if !fits || Int.random(in: 0..<10, using: &rng) == 0 {
                journal.reset(checkpoint: UInt64(value))
                model = [:]
            }
            if Int.random(in: 0..<8, using: &rng) == 0 {
                try journal.record(blocks, stoppingAfter: Int.random(in: 0..<n, using: &rng))
                journal = try adopt(journal)
            } else {
                try journal.record(blocks)
                for b in blocks { model[b] = value }
            }
            #expect(contents(journal) == model, "seed \(seed)")
        }
    }

    @Test func refusesCorruptOrForeignDescriptors() throws {
        let journal = try SharedMemoryJournal(cache: cache, capacityBlocks: 8)
        try set(70, 1)
        try journal.record([70])

        /// A copy of the journal's memfd with `bytes` written at `offset`
        /// (and more patches after).
        func corrupted(_ offset: Int, _ bytes: [UInt8], _ more: (Int, [UInt8])...) throws -> Int32 {
            let fd = bento_memfd_create("test")
            var st = stat()
            fstat(journal.fd, &st)
            var all = [UInt8](repeating: 0, count: Int(st.st_size))
            #expect(pread(journal.fd, &all, all.count, 0) == all.count)
            for (offset, bytes) in [(offset, bytes)] + more {
                all.replaceSubrange(offset..<offset + bytes.count, with: bytes)
            }
            #expect(pwrite(fd, all, all.count, 0) == all.count)
            #expect(bento_memfd_seal(fd) == 0)
            return fd
        }
        func le(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        func refused(_ fd: Int32, _ words: String) {
            do {
                _ = try SharedMemoryJournal(adopting: fd, cache: cache)
                Issue.record("adopted a journal that \(words)")
            } catch {
                guard case .invalid(let reason) = error else { Issue.record("\(error)"); return }
                #expect(reason.contains(words), "\(error)")
            }
        }
        // The unchanged copy is fine.
        #expect(contents(try SharedMemoryJournal(adopting: try corrupted(0, []), cache: cache)) == [70: 1])
        refused(try corrupted(0, le(0x1234)), "bad magic")
        refused(try corrupted(8, [2, 0, 0, 0]), "version 2")
        refused(try corrupted(12, [0, 2, 0, 0]), "block size 512")
        refused(try corrupted(16, le(0)), "capacity 0 out of range")
        refused(try corrupted(16, le(1 << 40)), "out of range")
        refused(try corrupted(16, le(9)), "too small for 9 slots")
        refused(try corrupted(24, le(9)), "slot count 9 above capacity")
        refused(try corrupted(40, le(5)), "reset after the last operation")
        refused(try corrupted(24, le(2), (4096 + 8, le(70))), "block 70 in two slots")
        refused(try corrupted(4096, le(1 << 40)), "past the device")

        // Too short for a header; not sealed; not a memfd at all.
        let short = bento_memfd_create("short")
        ftruncate(short, 100)
        bento_memfd_seal(short)
        refused(short, "too small for a header")
        let unsealed = bento_memfd_create("unsealed")
        ftruncate(unsealed, 1 << 20)
        refused(unsealed, "not sealed")
        var pipeEnds: [Int32] = [0, 0]
        pipe(&pipeEnds)
        close(pipeEnds[1])
        refused(pipeEnds[0], "not a memfd")
    }
}

/// A seeded generator, so that a failing random test can be run again.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
