import BentoKit
import Glibc

/// The host's buffer cache: a map from block number to an in-memory copy,
/// with clock (second-chance) replacement among clean, unpinned, unused
/// blocks. It never writes a dirty block on its own; if every block is dirty
/// or pinned it grows past its capacity rather than break write ordering.
public final class LRUBufferCache: BufferCache, @unchecked Sendable {
    public let device: any BlockDevice
    public let blockSize: Int
    public let capacity: Int

    private final class Buffer {
        var block: UInt64
        let data: UnsafeMutableRawPointer
        var dirty = false
        var pins = 0
        /// Closures running on this buffer right now.
        var users = 0
        var referenced = true
        init(block: UInt64, data: UnsafeMutableRawPointer) { self.block = block; self.data = data }
    }

    private let mutex = PthreadMutex()
    private var buffers: [UInt64: Buffer] = [:]
    private var slots: [Buffer] = []
    private var hand = 0

    public private(set) var hits: UInt64 = 0
    public private(set) var misses: UInt64 = 0

    /// `capacity` in blocks.
    public init(device: any BlockDevice, capacity: Int = 16384) {
        self.device = device
        self.blockSize = device.blockSize
        self.capacity = max(capacity, 16)
        buffers.reserveCapacity(self.capacity)
    }

    deinit { for buffer in slots { buffer.data.deallocate() } }

    /// Number of blocks cached now, and how many of them are dirty.
    public var counts: (cached: Int, dirty: Int) {
        mutex.withLock { (buffers.count, buffers.values.filter(\.dirty).count) }
    }

    public func withBlock<R>(_ block: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let buffer = try acquire(block, fill: .read, dirty: false)
        defer { release(buffer) }
        return try body(UnsafeRawBufferPointer(start: buffer.data, count: blockSize))
    }

    public func withMutableBlock<R>(_ block: UInt64, fill: BlockFill,
                                    _ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
        let buffer = try acquire(block, fill: fill, dirty: true)
        defer { release(buffer) }
        return try body(UnsafeMutableRawBufferPointer(start: buffer.data, count: blockSize))
    }

    public func pin(_ block: UInt64) {
        mutex.withLock { buffers[block]?.pins += 1 }
    }

    public func unpin(_ block: UInt64) {
        mutex.withLock {
            if let buffer = buffers[block], buffer.pins > 0 { buffer.pins -= 1 }
        }
    }

    public func isDirty(_ block: UInt64) -> Bool {
        mutex.withLock { buffers[block]?.dirty ?? false }
    }

    public func writeBack(_ block: UInt64) throws {
        try mutex.withLock { () throws in
            guard let buffer = buffers[block], buffer.dirty else { return }
            try device.write(block: block, from: UnsafeRawBufferPointer(start: buffer.data, count: blockSize))
            buffer.dirty = false
        }
    }

    public func discard(_ block: UInt64) {
        mutex.withLock {
            guard let buffer = buffers[block], buffer.pins == 0, buffer.users == 0 else { return }
            buffer.dirty = false
            buffers[block] = nil
        }
    }

    private func acquire(_ block: UInt64, fill: BlockFill, dirty: Bool) throws -> Buffer {
        mutex.lock(); defer { mutex.unlock() }
        if let buffer = buffers[block] {
            hits &+= 1
            buffer.users += 1
            buffer.referenced = true
            if fill == .zero { memset(buffer.data, 0, blockSize) }
            if dirty { buffer.dirty = true }
            return buffer
        }
        misses &+= 1
        guard block < device.blockCount else { throw Errno.EIO }
        let buffer = takeFreeBuffer(for: block)
        switch fill {
        case .zero: memset(buffer.data, 0, blockSize)
        case .read:
            do {
                try device.read(block: block, into: UnsafeMutableRawBufferPointer(start: buffer.data, count: blockSize))
            } catch {
                // Leave the slot clean and unmapped so it is reused.
                buffer.referenced = false
                throw error
            }
        }
        buffers[block] = buffer
        buffer.users = 1
        buffer.referenced = true
        buffer.dirty = dirty
        return buffer
    }

    private func release(_ buffer: Buffer) {
        mutex.withLock { buffer.users -= 1 }
    }

    /// A buffer no block maps to: a new one while under capacity, else the
    /// next evictable one the clock hand finds, else a new one past capacity.
    private func takeFreeBuffer(for block: UInt64) -> Buffer {
        if slots.count < capacity { return newSlot(block) }
        for _ in 0..<(2 * slots.count) {
            let candidate = slots[hand]
            hand = hand + 1 == slots.count ? 0 : hand + 1
            guard candidate.pins == 0, candidate.users == 0, !candidate.dirty else { continue }
            if candidate.referenced && buffers[candidate.block] === candidate {
                candidate.referenced = false
                continue
            }
            if buffers[candidate.block] === candidate { buffers[candidate.block] = nil }
            candidate.block = block
            return candidate
        }
        return newSlot(block)
    }

    private func newSlot(_ block: UInt64) -> Buffer {
        let data = UnsafeMutableRawPointer.allocate(byteCount: blockSize, alignment: 4096)
        let buffer = Buffer(block: block, data: data)
        slots.append(buffer)
        return buffer
    }
}
