@_spi(Host) import BentoKit
@_spi(Testing) import BentoServices
import Testing
import XV6Check
import XV6FS
import XV6Layout

/// Format features (compat, ro_compat, incompat) and read-only serving.
@Suite struct FeatureTests {
    static let now = Timespec(seconds: 1_700_000_000, nanoseconds: 0)

    static func formatted(_ features: FeatureSet, blocks: UInt64 = 4096) throws -> MemoryBlockDevice {
        let device = MemoryBlockDevice(blockCount: blocks)
        try Format.format(device, features: features, now: now)
        return device
    }

    static func superblockBytes(_ device: MemoryBlockDevice) -> [UInt8] {
        Array(device.snapshot()[Layout.blockSize..<2 * Layout.blockSize])
    }

    @Test func featuresRoundTripAndOldImagesHaveNone() throws {
        let features = FeatureSet([.xattr, .keepSize])
        var block = Self.superblockBytes(try Self.formatted(features))
        let decoded = try block.withUnsafeBytes { try Superblock.decode($0, deviceBlocks: 4096) }
        #expect(decoded.features == features)
        #expect(decoded.features.names == ["keep_size", "xattr"])
        // An image from before features: bytes 80 ..< 92 zero, checksum as before.
        let plain = Self.superblockBytes(try Self.formatted(.none))
        #expect(plain[80..<92].allSatisfy { $0 == 0 })
        #expect(try plain.withUnsafeBytes { try Superblock.decode($0, deviceBlocks: 4096) }.features == .none)
        // The checksum covers the bits: one flipped without it is caught.
        block[88] ^= 0x10
        #expect(throws: Superblock.DecodeError.badChecksum) {
            try block.withUnsafeBytes { _ = try Superblock.decode($0, deviceBlocks: 4096) }
        }
    }

    /// Bit 31 of an address marks an unwritten block: an image of more
    /// than 2^31 blocks cannot have the feature, neither from mkfs nor
    /// from a superblock that says so.
    @Test func unwrittenIsRefusedBeyondTwoToThe31Blocks() throws {
        let blocks = Layout.maxUnwrittenImageBlocks + 1
        var sb = try #require(Superblock.plan(totalBlocks: blocks))
        sb.features = FeatureSet([.unwritten])
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: Layout.blockSize, alignment: 16)
        defer { page.deallocate() }
        sb.encode(into: page)
        #expect(throws: Superblock.DecodeError.self) { try Superblock.decode(UnsafeRawBufferPointer(page), deviceBlocks: blocks) }
        sb.features = FeatureSet([.bigfile])
        sb.encode(into: page)
        #expect(try Superblock.decode(UnsafeRawBufferPointer(page), deviceBlocks: blocks).totalBlocks == blocks)
        sb = try #require(Superblock.plan(totalBlocks: Layout.maxUnwrittenImageBlocks))
        sb.features = FeatureSet([.unwritten])
        sb.encode(into: page)
        #expect(try Superblock.decode(UnsafeRawBufferPointer(page), deviceBlocks: sb.totalBlocks).features.contains(.unwritten))
    }

    @Test func supportDependsOnTheKind() {
        let unknownCompat = FeatureSet(compat: 1 << 7)
        #expect(unknownCompat.support(knowing: .none) == .readWrite)
        #expect(unknownCompat.names == ["compat_bit_7"])
        #expect(FeatureSet([.keepSize]).support(knowing: .none) == .readOnly(unknown: FeatureSet([.keepSize])))
        #expect(FeatureSet([.keepSize]).support(knowing: FeatureSet([.keepSize])) == .readWrite)
        let both = FeatureSet([.keepSize, .bigfile])
        #expect(both.support(knowing: .none) == .refused(unknown: FeatureSet([.bigfile])))
        #expect(both.support(knowing: FeatureSet([.bigfile])) == .readOnly(unknown: FeatureSet([.keepSize])))
        #expect(FeatureSet(incompat: 1 << 30).description == "incompat_bit_30")
    }

    @Test func mkfsFeatureLists() throws {
        #expect(try FeatureSet.none.applying("xattr,bigfile") == FeatureSet([.xattr, .bigfile]))
        #expect(try FeatureSet.none.applying("xattr,keep_size,^xattr") == FeatureSet([.keepSize]))
        #expect(try FeatureSet([.unwritten]).applying("^unwritten") == .none)
        #expect(throws: FeatureSet.ParseError.self) { _ = try FeatureSet.none.applying("xattr,acl") }
        #expect(throws: FeatureSet.ParseError.self) { _ = try FeatureSet.none.applying("") }
    }

    @Test func unknownIncompatIsRefusedAtMountImportAndPreflight() throws {
        let device = try Self.formatted(FeatureSet([.xattr]))
        let superBlock = SuperBlock(cache: LRUBufferCache(device: device, capacity: 256))
        for version in [Xv6Module(version: SemanticVersion(1, 0, 0)),
                        Xv6Module(version: SemanticVersion(2, 0, 0), provenance: true)] {
            let refusal = UnsupportedFeatures(unknown: FeatureSet([.xattr]), reader: "xv6fs \(version.descriptor.version)")
            #expect(throws: refusal) { _ = try version.mount(superBlock) }
            #expect(throws: refusal) { try version.checkCanServe(superBlock) }
            #expect("\(refusal)".contains("incompat features xv6fs \(version.descriptor.version) does not know: xattr"))
        }
        // A version that knows the feature serves the image, and exports a
        // state that one without it refuses to import.
        let knowing = Xv6Module(version: SemanticVersion(3, 0, 0), knownFeatures: FeatureSet([.xattr]))
        try knowing.checkCanServe(superBlock)
        let fs = try knowing.mount(superBlock)
        let state = try fs.exportState(format: Xv6Module.stateFormat)
        #expect(throws: UnsupportedFeatures.self) { _ = try module.restore(superBlock, from: state) }
        // And a plain image passes the preflight.
        let plain = SuperBlock(cache: LRUBufferCache(device: try Self.formatted(.none), capacity: 256))
        try module.checkCanServe(plain)
    }

    @Test func unknownROCompatIsServedReadOnly() throws {
        let device = try Self.formatted(FeatureSet([.keepSize]))
        let before = device.snapshot()
        let h = try Harness(device: device)
        #expect(try h.list(root) == [])
        #expect(errno { try h.writeFile("/new", [1, 2, 3]) } == .EROFS)
        #expect(errno { try h.mkdir("/d") } == .EROFS)
        #expect(errno { _ = try h.fs.open(ctx, ino: root, flags: OpenFlags.readOnly) } == nil)
        try h.fs.sync()
        try h.fs.destroy()
        #expect(device.snapshot() == before)
        // Known to the version: served read-write.
        let knowing = Xv6Module(version: SemanticVersion(3, 0, 0), knownFeatures: FeatureSet([.keepSize]))
        let fs = try knowing.mount(SuperBlock(cache: LRUBufferCache(device: device, capacity: 256)))
        _ = try fs.mkdir(ctx, parent: root, name: FileName("d"), mode: 0o755)
        try fs.destroy()
        #expect(device.snapshot() != before)
    }

    /// An image whose last transaction is committed in the log but not
    /// installed at home: what a crash between commit and install leaves.
    static func imageNeedingReplay() throws -> (image: [UInt8], data: [UInt8]) {
        let h = try Harness.fresh(blocks: 4096)
        let device = h.device as! MemoryBlockDevice
        let old = device.snapshot()
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try h.writeFile("/f", data)
        try h.mkdir("/d")
        try h.fs.sync()
        BackgroundWriteDevice.waitForAllWrites()  // and the commit is home too
        var image = device.snapshot()
        let bs = Layout.blockSize
        let header = try image.withUnsafeBytes { bytes in
            try #require(LogHeader.decode(UnsafeRawBufferPointer(rebasing: bytes[2 * bs..<3 * bs]), capacity: Layout.maxLogBlocks))
        }
        #expect(!header.blocks.isEmpty)
        for home in header.blocks.map(Int.init) { image[home * bs..<(home + 1) * bs] = old[home * bs..<(home + 1) * bs] }
        return (image, data)
    }

    @Test func readOnlyMountReplaysTheLogInMemoryOnly() throws {
        let (image, data) = try Self.imageNeedingReplay()
        let device = MemoryBlockDevice(image: image)
        let superBlock = SuperBlock(cache: LRUBufferCache(device: device, capacity: 64), journal: nil,
                                    kernelMayHoldInodes: false, readOnly: true)
        let h = try Harness(device: device, superBlock: superBlock)
        #expect(try h.readFile("/f") == data)
        #expect(try h.list(root).sorted() == ["d", "f"])
        #expect(errno { try h.writeFile("/f", [1]) } == .EROFS)
        #expect(errno { _ = try h.fs.unlink(ctx, parent: root, name: FileName("f")) } == .EROFS)
        #expect(errno { _ = try h.fs.setattr(ctx, ino: try h.resolve("/f"), SetAttributes(size: 0), handle: nil) } == .EROFS)
        // Upgraded to another instance: the overlay stays in the host's cache.
        let next = try module.restore(superBlock, from: try h.fs.exportState(format: Xv6Module.stateFormat))
        let upgraded = Harness(device: device, superBlock: superBlock, fs: next)
        #expect(try upgraded.readFile("/f") == data)
        try next.sync()
        try next.destroy()
        #expect(device.snapshot() == image, "a read-only mount wrote to the image")
        // A writable mount replays it for real.
        let writable = try Harness(device: device)
        #expect(try writable.readFile("/f") == data)
        #expect(device.snapshot() != image)
        try writable.fs.destroy()
        try expectClean(device, "after replay")
    }

    @Test func fsckChecksFeatures() throws {
        let refused = Checker(readOnly: true).check(try Self.formatted(FeatureSet(incompat: 1 << 9)))
        #expect(refused.exitCode == 8)
        #expect(refused.operationalError?.contains("incompat features fsck.xv6 does not know: incompat_bit_9") == true)
        #expect(refused.superblock?.features == FeatureSet(incompat: 1 << 9))
        // The data features of xv6fs 3.0 are checked.
        let known = Checker(readOnly: false).check(try Self.formatted(FeatureSet([.bigfile, .unwritten, .keepSize])))
        #expect(known.isClean && !known.has(.features), "\(known)")
        let roCompat = try Self.formatted(FeatureSet(roCompat: 1 << 9))
        let repair = Checker(readOnly: false).check(roCompat)
        #expect(repair.exitCode == 8)
        #expect(repair.operationalError?.contains("not repairing") == true)
        let look = Checker(readOnly: true).check(roCompat)
        #expect(look.exitCode == 0)
        #expect(look.has(.features))
        let plain = Checker(readOnly: false).check(try Self.formatted(.none))
        #expect(plain.isClean && !plain.has(.features))
    }
}
