import BentoKit
import BentoServices
import Foundation
import Testing

/// A device whose writes wait while it is closed, and fail for one block.
final class GatedDevice: BlockDevice, @unchecked Sendable {
    let base: MemoryBlockDevice
    let failing: UInt64?
    private let gate = NSCondition()
    private var closed = false
    init(_ base: MemoryBlockDevice, failing: UInt64? = nil) { self.base = base; self.failing = failing }
    var blockSize: Int { base.blockSize }
    var blockCount: UInt64 { base.blockCount }
    func close() { gate.withLock { closed = true } }
    func open() { gate.withLock { closed = false; gate.broadcast() } }
    func read(block: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws { try base.read(block: block, into: buffer) }
    func write(block: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        gate.withLock { while closed { gate.wait() } }
        guard block != failing else { throw Errno.EIO }
        try base.write(block: block, from: buffer)
    }
    func flush() throws {}
}

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

    @Test func aLaterWriteBackWritesTheBlockAsItWasThen() throws {
        let cache = LRUBufferCache(device: device, capacity: 16)
        try fill(cache, 3, 0xAB)
        try cache.writeBackLater([3, 4])  // 4 is not cached: nothing to write
        #expect(!cache.isDirty(3))
        try fill(cache, 3, 0xCD)
        try cache.device.flush()
        #expect(try deviceByte(3) == 0xAB)
        #expect(try deviceByte(4) == 0)
        #expect(cache.isDirty(3))
        #expect(try cache.withBlock(3) { (p: UnsafeRawBufferPointer) throws in p[0] } == 0xCD)
    }

    @Test func aBlockStaysCachedUntilItsLaterWriteIsDone() throws {
        let gated = GatedDevice(device)
        let cache = LRUBufferCache(device: gated, capacity: 16)
        try fill(cache, 3, 0xAB)
        gated.close()
        try cache.writeBackLater([3])
        // The writer is held: reading 40 other blocks through 16 slots
        // must not drop block 3, whose contents are not on the device yet.
        for b in 10..<50 { _ = try cache.withBlock(UInt64(b)) { (p: UnsafeRawBufferPointer) throws in p[0] } }
        #expect(try deviceByte(3) == 0)
        #expect(try cache.withBlock(3) { (p: UnsafeRawBufferPointer) throws in p[0] } == 0xAB)
        gated.open()
        try cache.device.flush()
        #expect(try deviceByte(3) == 0xAB)
    }

    @Test func aWriteBackWaitsForAnOlderLaterWrite() throws {
        let gated = GatedDevice(device)
        let cache = LRUBufferCache(device: gated, capacity: 16)
        try fill(cache, 3, 0xAB)
        gated.close()
        try cache.writeBackLater([3])
        try fill(cache, 3, 0xCD)
        let opener = Thread { usleep(50_000); gated.open() }
        opener.start()
        try cache.writeBack(3)  // the queued 0xAB must not land after it
        try cache.device.flush()
        #expect(try deviceByte(3) == 0xCD)
    }

    @Test func aFailedLaterWriteFailsEveryFlushAndKeepsTheBlockDirty() throws {
        let failing = GatedDevice(device, failing: 5)
        let cache = LRUBufferCache(device: failing, capacity: 16)
        try fill(cache, 5, 0x11)
        try fill(cache, 6, 0x22)
        try cache.writeBackLater([5, 6])
        #expect(throws: Errno.EIO) { try cache.device.flush() }
        #expect(throws: Errno.EIO) { try cache.device.flush() }
        #expect(cache.isDirty(5))
        #expect(!cache.isDirty(6))
        #expect(try deviceByte(6) == 0x22)
    }

    @Test func outOfRangeBlockIsEIO() {
        let cache = LRUBufferCache(device: device, capacity: 16)
        var caught: Errno?
        do { try cache.withBlock(64) { (_: UnsafeRawBufferPointer) throws in () } } catch { caught = error as? Errno }
        #expect(caught == .EIO)
    }
}
