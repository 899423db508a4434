import BentoKit
import Glibc

/// The host's buffer cache: a map from block number to an in-memory copy,
/// with clock (second-chance) replacement among clean, unpinned, unused
/// blocks. It never writes a dirty block on its own; if every block is dirty
/// or pinned it grows past its capacity rather than break write ordering.
/// `writeBackLater` hands copies to a writer thread (`BackgroundWriteDevice`)
/// and keeps each block pinned until its copy is written: until then the
/// device holds an older one.
///
/// Buffers are slots in one array, named by index, so the hot path does no
/// reference counting; their memory comes a chunk of slots at a time. Slots
/// that hold no block (discarded ones) are reused before any other.
public final class LRUBufferCache: BufferCache, @unchecked Sendable {
    /// The device behind a background writer: its flush waits for the
    /// writes `writeBackLater` started.
    public let device: any BlockDevice
    private let writer: BackgroundWriteDevice
    public let blockSize: Int
    public let capacity: Int

    private struct Slot {
        var block: UInt64
        let data: UnsafeMutableRawPointer
        var dirty = false
        var referenced = true
        var pins: Int32 = 0
        /// Closures running on this buffer right now.
        var users: Int32 = 0
    }

    /// Everything the mutex guards.
    private struct State {
        /// Block number to slot, for the blocks cached now.
        var buffers = IntegerMap<Int>()
        /// Every slot, in clock order.
        var slots: [Slot] = []
        /// Slots that hold no block, reused first.
        var unmapped: [Int] = []
        var hand = 0
        /// Block memory, allocated `chunkSlots` buffers at a time.
        var chunks: [UnsafeMutableRawPointer] = []
        var hits: UInt64 = 0
        var misses: UInt64 = 0
    }

    private static let chunkSlots = 64
    private let mutex = PthreadMutex()
    /// Held through a pointer rather than a stored `var`: the mutex keeps
    /// accesses apart, so the runtime's exclusivity checks would only add
    /// cost to every call.
    private let state = UnsafeMutablePointer<State>.allocate(capacity: 1)

    /// `capacity` in blocks.
    public init(device: any BlockDevice, capacity: Int = 16384) {
        writer = BackgroundWriteDevice(device)
        self.device = writer
        self.blockSize = device.blockSize
        self.capacity = max(capacity, 16)
        state.initialize(to: State())
        state.pointee.buffers.reserveCapacity(self.capacity)
    }

    deinit {
        for chunk in state.pointee.chunks { chunk.deallocate() }
        state.deinitialize(count: 1)
        state.deallocate()
    }

    @inline(__always)
    private func locked<R>(_ body: (inout State) throws -> R) rethrows -> R {
        mutex.lock(); defer { mutex.unlock() }
        return try body(&state.pointee)
    }

    public var hits: UInt64 { locked { $0.hits } }
    public var misses: UInt64 { locked { $0.misses } }

    /// Number of blocks cached now, and how many of them are dirty.
    public var counts: (cached: Int, dirty: Int) {
        locked { s in (s.buffers.count, s.buffers.values.filter { s.slots[$0].dirty }.count) }
    }

    /// Buffers allocated: the memory the cache holds, in blocks. Past
    /// `capacity` only while every block is dirty or pinned.
    public var allocatedBlocks: Int { locked { $0.slots.count } }

    public func withBlock<R>(_ block: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let (slot, data) = try acquire(block, fill: .read, dirty: false)
        defer { release(slot) }
        return try body(UnsafeRawBufferPointer(start: data, count: blockSize))
    }

    public func withMutableBlock<R>(_ block: UInt64, fill: BlockFill,
                                    _ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
        let (slot, data) = try acquire(block, fill: fill, dirty: true)
        defer { release(slot) }
        return try body(UnsafeMutableRawBufferPointer(start: data, count: blockSize))
    }

    public func pin(_ block: UInt64) {
        locked { s in
            if let slot = s.buffers[block] { s.slots[slot].pins += 1 }
        }
    }

    public func unpin(_ block: UInt64) {
        locked { s in
            if let slot = s.buffers[block], s.slots[slot].pins > 0 { s.slots[slot].pins -= 1 }
        }
    }

    public func isDirty(_ block: UInt64) -> Bool {
        locked { s in s.buffers[block].map { s.slots[$0].dirty } ?? false }
    }

    public func writeBack(_ block: UInt64) throws {
        // A copy still queued must not land after this newer one.
        writer.waitForWrites()
        try locked { s in
            guard let slot = s.buffers[block], s.slots[slot].dirty else { return }
            try device.write(block: block, from: UnsafeRawBufferPointer(start: s.slots[slot].data, count: blockSize))
            s.slots[slot].dirty = false
        }
    }

    /// Copies the dirty blocks among `blocks`, marks them clean, and pins
    /// them until the writer thread has written the copies. A write that
    /// fails leaves its block dirty, and the device's next flush fails.
    public func writeBackLater(_ blocks: [UInt64]) throws {
        writer.writeLater(count: blocks.count, copy: { copies in
            locked { s in
                var queued: [UInt64] = []
                for block in blocks {
                    guard let slot = s.buffers[block], s.slots[slot].dirty else { continue }
                    memcpy(copies + queued.count * blockSize, s.slots[slot].data, blockSize)
                    s.slots[slot].dirty = false
                    s.slots[slot].pins += 1
                    queued.append(block)
                }
                return queued
            }
        }, written: { [self] written, failed in
            locked { s in
                for block in written {
                    guard let slot = s.buffers[block] else { continue }
                    s.slots[slot].pins -= 1
                    if failed.contains(block) { s.slots[slot].dirty = true }
                }
            }
        })
    }

    /// Returns once the writes `writeBackLater` started have reached the
    /// device (not flushed): before another process reads the image.
    public func waitForWriteBacks() { writer.waitForWrites() }

    public func discard(_ block: UInt64) {
        locked { s in
            guard let slot = s.buffers[block], s.slots[slot].pins == 0, s.slots[slot].users == 0 else { return }
            s.slots[slot].dirty = false
            s.buffers[block] = nil
            s.unmapped.append(slot)
        }
    }

    /// The slot holding `block`, with one more user, and its memory.
    private func acquire(_ block: UInt64, fill: BlockFill, dirty: Bool) throws -> (Int, UnsafeMutableRawPointer) {
        try locked { s in
            if let slot = s.buffers[block] {
                s.hits &+= 1
                s.slots[slot].users += 1
                s.slots[slot].referenced = true
                if dirty { s.slots[slot].dirty = true }
                if fill == .zero { memset(s.slots[slot].data, 0, blockSize) }
                return (slot, s.slots[slot].data)
            }
            s.misses &+= 1
            guard block < device.blockCount else { throw Errno.EIO }
            let slot = takeFreeSlot(&s)
            let data = s.slots[slot].data
            switch fill {
            case .zero: memset(data, 0, blockSize)
            case .read:
                do {
                    try device.read(block: block, into: UnsafeMutableRawBufferPointer(start: data, count: blockSize))
                } catch {
                    s.unmapped.append(slot)
                    throw error
                }
            }
            s.buffers[block] = slot
            s.slots[slot].block = block
            s.slots[slot].users = 1
            s.slots[slot].referenced = true
            s.slots[slot].dirty = dirty
            return (slot, data)
        }
    }

    private func release(_ slot: Int) {
        locked { $0.slots[slot].users -= 1 }
    }

    /// A slot no block maps to: an unmapped one if any, a new one while
    /// under capacity, else the next evictable one the clock hand finds,
    /// else a new one past capacity.
    private func takeFreeSlot(_ s: inout State) -> Int {
        if let slot = s.unmapped.popLast() { return slot }
        if s.slots.count < capacity { return newSlot(&s) }
        for _ in 0..<(2 * s.slots.count) {
            let slot = s.hand
            s.hand = slot + 1 == s.slots.count ? 0 : slot + 1
            let candidate = s.slots[slot]
            guard candidate.pins == 0, candidate.users == 0, !candidate.dirty else { continue }
            if candidate.referenced {
                s.slots[slot].referenced = false
                continue
            }
            if s.buffers[candidate.block] == slot { s.buffers[candidate.block] = nil }
            return slot
        }
        return newSlot(&s)
    }

    private func newSlot(_ s: inout State) -> Int {
        let within = s.slots.count % Self.chunkSlots
        if within == 0 {
            s.chunks.append(UnsafeMutableRawPointer.allocate(byteCount: Self.chunkSlots * blockSize, alignment: 4096))
        }
        s.slots.append(Slot(block: 0, data: s.chunks[s.chunks.count - 1] + within * blockSize))
        return s.slots.count - 1
    }
}
