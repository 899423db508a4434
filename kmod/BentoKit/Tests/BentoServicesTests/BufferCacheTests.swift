import BentoKit
import BentoServices
import Testing

@Suite struct BufferCacheTests {
    let device = MemoryBlockDevice(blockCount: 64)

    func fill(_ cache: LRUBufferCache, _ block: UInt64, _ byte: UInt8) throws {
        try cache.withMutableBlock(block) { (buf: UnsafeMutableRawBufferPointer) throws in
            for i in buf.indices { buf[i] = byte }
        }
    }

    func deviceByte(_ block: UInt64) throws -> UInt8 {
        var page = [UInt8](repeating: 0, count: 4096)
        try page.withUnsafeMutableBytes { p in try device.read(block: block, into: p) }
        return page[0]
    }

    @Test func dirtyBlocksReachTheDeviceOnlyOnWriteBack() throws {
        let cache = LRUBufferCache(device: device, capacity: 16)
        try fill(cache, 3, 0xAB)
        #expect(cache.isDirty(3))
        #expect(try deviceByte(3) == 0)
        try cache.writeBack(3)
        #expect(!cache.isDirty(3))
        #expect(try deviceByte(3) == 0xAB)
    }

    @Test func evictsOnlyCleanUnpinnedBlocks() throws {
        let cache = LRUBufferCache(device: device, capacity: 16)
        // 16 dirty blocks fill the cache; 16 more must grow it, not write.
        for b in 0..<32 { try fill(cache, UInt64(b), UInt8(b + 1)) }
        #expect(cache.counts.cached == 32)
        #expect(cache.counts.dirty == 32)
        for b in 0..<32 { #expect(try deviceByte(UInt64(b)) == 0) }
        // Once clean, blocks become evictable except the pinned one.
        cache.pin(5)
        for b in 0..<32 { try cache.writeBack(UInt64(b)) }
        for b in 32..<64 { _ = try cache.withBlock(UInt64(b)) { (p: UnsafeRawBufferPointer) throws in p[0] } }
        #expect(cache.counts.cached <= 33)
        let pinned = try cache.withBlock(5) { (p: UnsafeRawBufferPointer) throws in p[0] }
        #expect(pinned == 6)
    }

    @Test func zeroFillClearsEvenACachedBlock() throws {
        let cache = LRUBufferCache(device: device, capacity: 16)
        try fill(cache, 7, 0xFF)
        let sum = try cache.withMutableBlock(7, fill: .zero) { (p: UnsafeMutableRawBufferPointer) throws in
            p.reduce(0) { $0 + Int($1) }
        }
        #expect(sum == 0)
    }

    @Test func outOfRangeBlockIsEIO() {
        let cache = LRUBufferCache(device: device, capacity: 16)
        var caught: Errno?
        do { try cache.withBlock(64) { (_: UnsafeRawBufferPointer) throws in () } } catch { caught = error as? Errno }
        #expect(caught == .EIO)
    }
}
