@_spi(Host) import BentoKit
@_spi(Testing) import BentoServices
import Testing
import XV6Check
import XV6FS
import XV6Layout

/// What version 3 adds to file data: files past 4 GiB (`bigfile`),
/// fallocate (`unwritten`, `keep_size`) and SEEK_DATA / SEEK_HOLE.
@Suite struct DataFeatureTests {
    static let version3 = Xv6Module(version: SemanticVersion(3, 0, 0),
                                    knownFeatures: FeatureSet([.bigfile, .unwritten, .keepSize]))
    static let tib: UInt64 = 1 << 40
    static let keepSize = Xv6FileSystem.FallocateMode.keepSize
    static let punchHole = Xv6FileSystem.FallocateMode.punchHole
    static let zeroRange = Xv6FileSystem.FallocateMode.zeroRange

    /// Mounts `device` as version 3 does.
    static func mount(_ device: any BlockDevice) throws -> Harness {
        let superBlock = SuperBlock(cache: LRUBufferCache(device: device, capacity: 4096))
        let fs = try version3.mount(superBlock) as! Xv6FileSystem
        fs.dataFeatures = true
        return Harness(device: device, superBlock: superBlock, fs: fs)
    }

    static func fresh(blocks: UInt64 = 8192) throws -> Harness {
        let device = MemoryBlockDevice(blockCount: blocks)
        try Format.format(device, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        return try mount(device)
    }

    /// The features in the superblock at home (after a commit), once the
    /// cache's writer has written what the commit gave it.
    static func features(_ device: any BlockDevice) throws -> FeatureSet {
        BackgroundWriteDevice.waitForAllWrites()
        var block = [UInt8](repeating: 0, count: Layout.blockSize)
        try block.withUnsafeMutableBytes { try device.read(block: Layout.superblockNumber, into: $0) }
        return try block.withUnsafeBytes { try Superblock.decode($0, deviceBlocks: device.blockCount) }.features
    }

    static func read(_ h: Harness, _ ino: InodeNumber, at offset: UInt64, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0xEE, count: count)
        let n = try bytes.withUnsafeMutableBytes { try h.fs.read(ctx, ino: ino, handle: 0, offset: offset, into: $0) }
        return Array(bytes[0..<n])
    }

    static func write(_ h: Harness, _ ino: InodeNumber, at offset: UInt64, _ data: [UInt8]) throws {
        let n = try data.withUnsafeBytes { try h.fs.write(ctx, ino: ino, handle: 0, offset: offset, data: $0) }
        #expect(n == data.count)
    }

    static func fallocate(_ h: Harness, _ ino: InodeNumber, mode: Int32 = 0, _ offset: UInt64, _ length: UInt64) throws {
        try (h.fs as! Xv6FileSystem).fallocate(ctx, ino: ino, handle: 0, mode: mode, offset: offset, length: length)
    }

    static func seek(_ h: Harness, _ ino: InodeNumber, _ offset: UInt64, _ whence: Int32) throws -> UInt64 {
        try (h.fs as! Xv6FileSystem).seek(ctx, ino: ino, handle: 0, offset: offset, whence: whence)
    }

    static func blocks(_ h: Harness, _ ino: InodeNumber) throws -> UInt64 { try h.fs.getattr(ctx, ino: ino).blocks / 8 }

    @Test func aWriteNear1TiBReadsBackAndTheRestReadsAsZeroes() throws {
        let h = try Self.fresh()
        let ino = try h.writeFile("big", [])
        let data = pattern(10_000, seed: 1)
        let offset = Self.tib - 5000
        try Self.write(h, ino, at: offset, data)
        #expect(try h.fs.getattr(ctx, ino: ino).size == offset + 10_000)
        #expect(try Self.read(h, ino, at: offset, count: 10_000) == data)
        #expect(try Self.read(h, ino, at: offset - 8192, count: 8192) == [UInt8](repeating: 0, count: 8192))
        #expect(try Self.read(h, ino, at: 1 << 32, count: 4096) == [UInt8](repeating: 0, count: 4096))
        // Four data blocks, a triple-, a double- and an indirect block.
        #expect(try Self.blocks(h, ino) == 7)
        try h.fs.sync()
        #expect(try Self.features(h.device) == FeatureSet([.bigfile]))
        try h.fs.destroy()
        try expectClean(h.device, "1 TiB file")
        let again = try Self.mount(h.device)
        #expect(try Self.read(again, ino, at: offset, count: 10_000) == data)
        // Past the triple-indirect block: EFBIG.
        #expect(errno { try Self.write(again, ino, at: Layout.maxBigFileSize, [1]) } == .EFBIG)
        try again.fs.destroy()
    }

    @Test func truncateTo2TiBAndBackFreesEverything() throws {
        let h = try Self.fresh()
        let free = try h.statfs().freeBlocks
        let ino = try h.writeFile("f", pattern(100, seed: 2))
        _ = try h.fs.setattr(ctx, ino: ino, SetAttributes(size: 2 * Self.tib), handle: nil)
        #expect(try h.fs.getattr(ctx, ino: ino).size == 2 * Self.tib)
        try Self.write(h, ino, at: Self.tib + 12345, pattern(300_000, seed: 3))
        try Self.write(h, ino, at: 2 * Self.tib - 10, pattern(10, seed: 4))
        #expect(try h.statfs().freeBlocks < free - 70)
        try h.fs.sync()
        try expectClean(h.device, "2 TiB sparse file")
        _ = try h.fs.setattr(ctx, ino: ino, SetAttributes(size: 50), handle: nil)
        #expect(try Self.read(h, ino, at: 0, count: 100) == Array(pattern(100, seed: 2)[0..<50]))
        #expect(try Self.blocks(h, ino) == 1)
        #expect(try h.statfs().freeBlocks == free - 1)
        try h.fs.destroy()
        try expectClean(h.device, "truncated back")
    }

    /// A size past 4 GiB over nothing but a hole uses `bigfile` too:
    /// earlier versions take such a size for damage.
    @Test func aSizePast4GiBAloneSetsBigfile() throws {
        let h = try Self.fresh()
        let ino = try h.writeFile("f", pattern(10, seed: 5))
        _ = try h.fs.setattr(ctx, ino: ino, SetAttributes(size: 5 << 30), handle: nil)
        try h.fs.sync()
        #expect(try Self.features(h.device).contains(.bigfile))
        try h.fs.destroy()
        try expectClean(h.device, "a 5 GiB hole")
    }

    @Test func withoutDataFeaturesNothingChanges() throws {
        let h = try Harness.fresh()
        let fs = h.fs as! Xv6FileSystem
        #expect(!fs.dataFeatures)
        let ino = try h.writeFile("f", pattern(100, seed: 5))
        #expect(errno { try Self.write(h, ino, at: Layout.maxFileSize, [1]) } == .EFBIG)
        #expect(errno { _ = try h.fs.setattr(ctx, ino: ino, SetAttributes(size: 1 << 33), handle: nil) } == .EFBIG)
        #expect(errno { try fs.fallocate(ctx, ino: ino, handle: 0, mode: 0, offset: 0, length: 4096) } == .EOPNOTSUPP)
        #expect(errno { _ = try fs.seek(ctx, ino: ino, handle: 0, offset: 0, whence: 3) } == .ENOSYS)
        try h.fs.destroy()
        #expect(try Self.features(h.device) == .none)
    }

    @Test func fallocateModeZeroAllocatesUnwrittenBlocksAndGrowsTheSize() throws {
        let h = try Self.fresh()
        let free = try h.statfs().freeBlocks
        let ino = try h.writeFile("f", [])
        try Self.fallocate(h, ino, 0, 1 << 20)
        #expect(try h.fs.getattr(ctx, ino: ino).size == 1 << 20)
        #expect(try Self.blocks(h, ino) == 257)  // 256 data blocks and an indirect block
        #expect(try h.statfs().freeBlocks == free - 257)
        #expect(try Self.read(h, ino, at: 0, count: 1 << 20) == [UInt8](repeating: 0, count: 1 << 20))
        // A write into it: its block becomes written, the rest still zeroes.
        let data = pattern(5000, seed: 6)
        try Self.write(h, ino, at: 10_000, data)
        let back = try Self.read(h, ino, at: 0, count: 1 << 20)
        #expect(Array(back[10_000..<15_000]) == data)
        #expect(back[0..<10_000].allSatisfy { $0 == 0 } && back[15_000...].allSatisfy { $0 == 0 })
        #expect(try Self.blocks(h, ino) == 257)
        try h.fs.sync()
        #expect(try Self.features(h.device) == FeatureSet([.unwritten]))
        // Unaligned, past the end: the size is exactly offset + length.
        try Self.fallocate(h, ino, (1 << 20) + 100, 5000)
        #expect(try h.fs.getattr(ctx, ino: ino).size == (1 << 20) + 5100)
        try h.fs.destroy()
        try expectClean(h.device, "fallocate mode 0")
        let again = try Self.mount(h.device)
        #expect(try again.readFile(ino) == back + [UInt8](repeating: 0, count: 5100))
        try again.fs.unlink(ctx, parent: root, name: "f")
        #expect(try again.statfs().freeBlocks == free)
        try again.fs.destroy()
        try expectClean(h.device, "unlinked")
    }

    @Test func fallocateKeepSizeMapsBlocksPastTheSize() throws {
        let h = try Self.fresh()
        let free = try h.statfs().freeBlocks
        let ino = try h.writeFile("f", pattern(10, seed: 7))
        try Self.fallocate(h, ino, mode: Self.keepSize, 0, 64 << 10)
        #expect(try h.fs.getattr(ctx, ino: ino).size == 10)
        #expect(try Self.blocks(h, ino) == 16)
        #expect(try h.statfs().freeBlocks == free - 16)
        #expect(try h.readFile(ino) == pattern(10, seed: 7))
        try h.fs.sync()
        #expect(try Self.features(h.device) == FeatureSet([.unwritten, .keepSize]))
        try expectClean(h.device, "keep size")
        // Growing over the preallocated blocks: they read as zeroes.
        _ = try h.fs.setattr(ctx, ino: ino, SetAttributes(size: 20_000), handle: nil)
        #expect(try h.readFile(ino) == pattern(10, seed: 7) + [UInt8](repeating: 0, count: 19_990))
        #expect(try Self.blocks(h, ino) == 16)
        // Shrinking frees those past the new size, preallocated or not.
        _ = try h.fs.setattr(ctx, ino: ino, SetAttributes(size: 5), handle: nil)
        #expect(try Self.blocks(h, ino) == 1)
        try h.fs.destroy()
        try expectClean(h.device, "keep size truncated")
    }

    @Test func punchHoleFreesWholeBlocksAndZeroesPartialOnes() throws {
        let h = try Self.fresh()
        let data = pattern(64 << 10, seed: 8)
        let ino = try h.writeFile("f", data)
        let free = try h.statfs().freeBlocks
        try Self.fallocate(h, ino, mode: Self.punchHole | Self.keepSize, 1000, 29_000)
        var expected = data
        for i in 1000..<30_000 { expected[i] = 0 }
        #expect(try h.fs.getattr(ctx, ino: ino).size == 64 << 10)
        #expect(try h.readFile(ino) == expected)
        #expect(try Self.blocks(h, ino) == 10)  // blocks 1 ... 6 freed
        #expect(try h.statfs().freeBlocks == free + 6)
        // Punching without KEEP_SIZE, or collapsing: not supported.
        #expect(errno { try Self.fallocate(h, ino, mode: Self.punchHole, 0, 4096) } == .EOPNOTSUPP)
        #expect(errno { try Self.fallocate(h, ino, mode: 0x08, 0, 4096) } == .EOPNOTSUPP)
        #expect(errno { try Self.fallocate(h, ino, 0, 0) } == .EINVAL)
        // A punch across a large sparse range skips the holes.
        try Self.write(h, ino, at: Self.tib, [1, 2, 3])
        try Self.fallocate(h, ino, mode: Self.punchHole | Self.keepSize, 0, Self.tib + 4096)
        #expect(try Self.blocks(h, ino) == 3)  // the tables stay, holding holes
        try h.fs.destroy()
        try expectClean(h.device, "punch hole")
    }

    /// A file with more blocks than one bitmap block covers, so its
    /// blocks straddle two: removing it frees every one of them (freeing
    /// goes bitmap block by bitmap block).
    @Test func removingAFileAcrossTwoBitmapBlocksFreesItAll() throws {
        let perBitmapBlock = UInt64(Layout.bitsPerBlock)
        let h = try Self.fresh(blocks: perBitmapBlock + 4096)
        let free = try h.statfs().freeBlocks
        let ino = try h.writeFile("f", [1])
        try Self.fallocate(h, ino, 0, perBitmapBlock * UInt64(Layout.blockSize))
        #expect(try h.statfs().freeBlocks < free - perBitmapBlock)
        try h.fs.unlink(ctx, parent: root, name: FileName("f"))
        #expect(try h.statfs().freeBlocks == free)
        try h.fs.sync()
        try expectClean(h.device, "removed")
    }

    @Test func zeroRangeZeroesWithOrWithoutKeepSize() throws {
        let h = try Self.fresh()
        let data = pattern(64 << 10, seed: 9)
        let ino = try h.writeFile("f", data)
        try Self.fallocate(h, ino, mode: Self.zeroRange, 1000, 29_000)
        var expected = data
        for i in 1000..<30_000 { expected[i] = 0 }
        #expect(try h.readFile(ino) == expected)
        #expect(try Self.blocks(h, ino) == 16)  // whole blocks turned unwritten, not freed
        // Past the end: without KEEP_SIZE the size grows, with it it stays.
        try Self.fallocate(h, ino, mode: Self.zeroRange, 60_000, 10_000)
        #expect(try h.fs.getattr(ctx, ino: ino).size == 70_000)
        for i in 60_000..<(64 << 10) { expected[i] = 0 }
        #expect(try h.readFile(ino) == expected + [UInt8](repeating: 0, count: 70_000 - (64 << 10)))
        try Self.fallocate(h, ino, mode: Self.zeroRange | Self.keepSize, 70_000, 100_000)
        #expect(try h.fs.getattr(ctx, ino: ino).size == 70_000)
        try h.fs.destroy()
        try expectClean(h.device, "zero range")
    }

    @Test func seekDataAndHoleOverSparseAndPreallocatedFiles() throws {
        let h = try Self.fresh()
        let bs: UInt64 = 4096
        let ino = try h.writeFile("f", pattern(100, seed: 10))
        try Self.write(h, ino, at: 100 * bs + 7, pattern(100, seed: 11))
        let size = 100 * bs + 107
        let data: Int32 = 3, hole: Int32 = 4
        #expect(try Self.seek(h, ino, 0, data) == 0)
        #expect(try Self.seek(h, ino, 0, hole) == bs)
        #expect(try Self.seek(h, ino, 50, data) == 50)
        #expect(try Self.seek(h, ino, bs, data) == 100 * bs)
        #expect(try Self.seek(h, ino, 100 * bs + 3, hole) == size)  // the end is a hole
        #expect(errno { _ = try Self.seek(h, ino, size, data) } == .ENXIO)
        #expect(errno { _ = try Self.seek(h, ino, size, hole) } == .ENXIO)
        #expect(errno { _ = try Self.seek(h, ino, 0, 0) } == .EINVAL)
        // Preallocated blocks count as holes, as ext4 reports them.
        try Self.fallocate(h, ino, 101 * bs, 50 * bs)
        #expect(try Self.seek(h, ino, 100 * bs, hole) == 101 * bs)
        #expect(errno { _ = try Self.seek(h, ino, 101 * bs, data) } == .ENXIO)
        try Self.write(h, ino, at: 120 * bs, [1])
        #expect(try Self.seek(h, ino, 101 * bs, data) == 120 * bs)
        // A sparse 1 TiB file: one block in the middle, found fast.
        let big = try h.writeFile("big", [])
        _ = try h.fs.setattr(ctx, ino: big, SetAttributes(size: Self.tib), handle: nil)
        try Self.write(h, big, at: Self.tib / 2, [9])
        #expect(try Self.seek(h, big, 0, data) == Self.tib / 2)
        #expect(try Self.seek(h, big, 0, hole) == 0)
        #expect(try Self.seek(h, big, Self.tib / 2, hole) == Self.tib / 2 + bs)
        #expect(try Self.seek(h, big, Self.tib / 2 + 1, data) == Self.tib / 2 + 1)
        #expect(errno { _ = try Self.seek(h, big, Self.tib / 2 + bs, data) } == .ENXIO)
        try h.fs.destroy()
        try expectClean(h.device, "seek")
    }

    @Test func anUpgradeInTheMiddleCarriesOn() throws {
        let h = try Self.fresh()
        let ino = try h.writeFile("f", [])
        try Self.fallocate(h, ino, 0, 2 << 20)
        try Self.write(h, ino, at: Self.tib, pattern(5000, seed: 12))
        try Self.fallocate(h, ino, mode: Self.keepSize, Self.tib + 5000, 1 << 20)
        // Nothing committed yet: the feature bits are in the open transaction only.
        #expect(try Self.features(h.device) == .none)
        let state = try h.fs.exportState(format: Xv6Module.stateFormat)
        let next = try Self.version3.restore(h.superBlock, from: state) as! Xv6FileSystem
        next.dataFeatures = true
        let after = Harness(device: h.device, superBlock: h.superBlock, fs: next)
        #expect(try Self.read(after, ino, at: Self.tib, count: 5000) == pattern(5000, seed: 12))
        #expect(try Self.seek(after, ino, 0, 3) == Self.tib)
        try Self.fallocate(after, ino, mode: Self.punchHole | Self.keepSize, 0, 1 << 20)
        #expect(try Self.blocks(after, ino) == 256 + 2 + 256 + 2 + 3)
        try after.fs.destroy()
        #expect(try Self.features(h.device) == FeatureSet([.bigfile, .unwritten, .keepSize]))
        try expectClean(h.device, "after an upgrade")
    }

    /// Rewrites the superblock on the device with other features, offline.
    static func setFeatures(_ device: MemoryBlockDevice, _ features: FeatureSet) throws {
        var block = [UInt8](repeating: 0, count: Layout.blockSize)
        try block.withUnsafeMutableBytes { try device.read(block: Layout.superblockNumber, into: $0) }
        var sb = try block.withUnsafeBytes { try Superblock.decode($0, deviceBlocks: device.blockCount) }
        sb.features = features
        try block.withUnsafeMutableBytes { sb.encode(into: $0) }
        try block.withUnsafeBytes { try device.write(block: Layout.superblockNumber, from: $0) }
        // The log's last transaction, installed already, may hold a copy of
        // the superblock that replay would put back: clear it, as an
        // offline tool must.
        let empty = [UInt8](repeating: 0, count: Layout.blockSize)
        try empty.withUnsafeBytes { try device.write(block: UInt64(sb.logStart), from: $0) }
    }

    @Test func fsckNeedsTheFeatureBitsForWhatItFinds() throws {
        let device = MemoryBlockDevice(blockCount: 8192)
        try Format.format(device, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        let h = try Self.mount(device)
        let big = try h.writeFile("big", [])
        try Self.write(h, big, at: Self.tib, [1])
        let kept = try h.writeFile("kept", [2])
        try Self.fallocate(h, kept, mode: Self.keepSize, 0, 1 << 20)
        try h.fs.destroy()
        try expectClean(device, "all three features")
        try Self.setFeatures(device, FeatureSet([.bigfile, .unwritten]))
        let noKeepSize = Checker(readOnly: true).check(device)
        #expect(noKeepSize.has(.beyondSize) && !noKeepSize.has(.blockAddress), "\(noKeepSize)")
        try Self.setFeatures(device, FeatureSet([.unwritten, .keepSize]))
        let noBigfile = Checker(readOnly: true).check(device)
        #expect(noBigfile.has(.blockAddress) && noBigfile.has(.fileSize), "\(noBigfile)")
        // Without `unwritten`, a marked address is a block number past the image.
        try Self.setFeatures(device, FeatureSet([.bigfile, .keepSize]))
        let noUnwritten = Checker(readOnly: true).check(device)
        #expect(noUnwritten.has(.blockAddress) && !noUnwritten.has(.fileSize), "\(noUnwritten)")
    }

    /// A large fallocate spans many transactions: a crash anywhere leaves a
    /// consistent file system, and what was fsynced before stays.
    @Test(arguments: [0, 1] as [Int32])
    func aLargeFallocateCutAnywhereRecoversClean(keepSize: Int32) throws {
        var rng = SeededGenerator(seed: 40 + UInt64(keepSize))
        let base = MemoryBlockDevice(blockCount: 8192)
        try Format.format(base, inodeCount: 256, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        let initial = base.snapshot()
        let recorder = RecordingDevice(base)
        let h = try Self.mount(recorder)
        let kept = pattern(50_000, seed: 13)
        let keptIno = try h.writeFile("kept", kept)
        try h.fs.fsync(ctx, ino: keptIno, handle: 0, dataOnly: false)
        let syncedAt = recorder.events.count
        let ino = try h.writeFile("big", pattern(3000, seed: 14))
        try Self.fallocate(h, ino, mode: keepSize, 0, 16 << 20)  // 4096 blocks: many transactions
        try Self.fallocate(h, ino, mode: Self.punchHole | Self.keepSize, 1 << 20, 4 << 20)
        try h.fs.fsync(ctx, ino: ino, handle: 0, dataOnly: false)
        let total = recorder.events.count
        let cuts = (0..<25).map { _ in Int.random(in: syncedAt...total, using: &rng) } + [syncedAt, total]
        for cut in cuts {
            let device = recorder.crashImage(from: initial, cut: cut, rng: &rng)
            let after = try Self.mount(device)
            #expect(try after.readFile("kept") == kept, "cut \(cut)/\(total)")
            if let big = try? after.resolve("big") {
                let size = try after.fs.getattr(ctx, ino: big).size
                let back = try after.readFile(big)
                #expect(back.count == Int(size))
                #expect(Array(back.prefix(3000)) == Array(pattern(3000, seed: 14).prefix(back.count)), "cut \(cut)/\(total)")
                #expect(back.dropFirst(3000).allSatisfy { $0 == 0 }, "cut \(cut)/\(total)")
            }
            try after.fs.destroy()
            try expectClean(device, "keep size \(keepSize), cut \(cut)/\(total)")
        }
    }
}
