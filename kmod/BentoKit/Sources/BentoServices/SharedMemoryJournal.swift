import BentoKit
import CBentoServices
import Glibc

/// The operation journal in a memfd: shared memory that outlives the
/// process when its descriptor sits in systemd's fd store, so a restarted
/// daemon adopts it and gets back every operation the dead one answered.
///
/// Layout (native byte order; the memfd never leaves the machine):
///
///     header      4 KiB: magic, version, block size, capacity, slot count,
///                 committed (number of the last complete operation),
///                 resetAt (committed at the last reset), checkpoint
///     slot table  capacity × UInt64: the home block number of each slot
///     sequences   capacity × 2 × UInt64: per slot, the operation number
///                 each of its two images was written by (0: none)
///     images      capacity × 2 blocks, page aligned
///
/// One slot per distinct block since the last reset (absorption), with two
/// images: an operation writes the image that is not current, stamps it
/// with its own number, and publishes itself by storing `committed` last.
/// A slot's current image is the one with the highest number not above
/// `committed`, so until that store the previous images stay current, and
/// an operation takes effect whole or not at all. New slots are filled
/// before `slotCount` covers them. See Docs/crash-journal.md.
///
/// The atomicity is against the death of the process (SIGKILL at any
/// instruction), not of the machine. A signal stops the process at an
/// instruction boundary and every store before it reaches memory, so
/// program order is what counts; the stores that publish are release
/// stores, which keep the compiler (and the processor) from moving earlier
/// stores after them.
public final class SharedMemoryJournal: OperationJournal, @unchecked Sendable {
    public enum OpenError: Error, CustomStringConvertible, Equatable {
        /// A system call failed: which one, and errno.
        case system(String, Int32)
        /// The descriptor does not hold a journal this code can use.
        case invalid(String)

        public var description: String {
            switch self {
            case .system(let call, let err): "operation journal: \(call) failed: \(String(cString: strerror(err)))"
            case .invalid(let reason): "operation journal: refused: \(reason)"
            }
        }
    }

    /// "BENTOJNL" in ASCII, little-endian.
    public static let magic: UInt64 = 0x4C4E_4A4F_544E_4542
    public static let version: UInt32 = 1
    /// Most slots a journal may have (2 GiB of images at 4 KiB blocks).
    public static let maxCapacity = 1 << 18

    /// The memfd. The journal owns it (closes it when freed); the host puts
    /// a copy in the fd store.
    public let fd: Int32
    public let capacity: Int
    public let blockSize: Int
    private let cache: any BufferCache
    private let base: UnsafeMutableRawPointer
    private let length: Int
    private let layout: Layout
    private let mutex = PthreadMutex()
    /// Home block to slot, for slots below the slot count.
    private var index = IntegerMap<Int>()

    private struct Layout {
        static let headerSize = 4096
        let capacity: Int
        let blockSize: Int
        var table: Int { Self.headerSize }
        var sequences: Int { table + Self.pageRounded(capacity * 8) }
        var images: Int { sequences + Self.pageRounded(capacity * 16) }
        var total: Int { images + 2 * capacity * blockSize }
        static func pageRounded(_ n: Int) -> Int { (n + 4095) & ~4095 }
    }

    /// Header fields, as word offsets.
    private enum Field: Int {
        case magic = 0, versionAndBlockSize, capacity, slotCount, committed, resetAt, checkpoint
    }

    // MARK: Creating and adopting

    /// A new, empty journal in a new memfd, for blocks of `cache`.
    /// `capacityBlocks` must cover the most distinct blocks the module
    /// changes between two commits (for xv6fs: its log's size, at most
    /// 1,020 blocks); memory is only used as slots fill.
    public convenience init(cache: any BufferCache, capacityBlocks: Int = 1024) throws(OpenError) {
        try self.init(adopting: Self.makeMemoryFile(blockSize: cache.blockSize, capacityBlocks: capacityBlocks), cache: cache)
    }

    /// A new, empty journal's memfd, for a process that keeps the journal
    /// while others write it (a daemon whose mounts are served by worker
    /// processes): each worker adopts it.
    public static func makeMemoryFile(blockSize: Int, capacityBlocks: Int = 1024) throws(OpenError) -> Int32 {
        guard capacityBlocks > 0, capacityBlocks <= Self.maxCapacity else {
            throw .invalid("capacity \(capacityBlocks) is not in 1...\(Self.maxCapacity)")
        }
        let layout = Layout(capacity: capacityBlocks, blockSize: blockSize)
        let fd = bento_memfd_create("bento-journal")
        guard fd >= 0 else { throw .system("memfd_create", errno) }
        guard ftruncate(fd, off_t(layout.total)) == 0 else {
            let err = errno; close(fd); throw .system("ftruncate", err)
        }
        guard bento_memfd_seal(fd) == 0 else { let err = errno; close(fd); throw .system("F_ADD_SEALS", err) }
        let header: UnsafeMutableRawPointer
        do { header = try Self.map(fd, Layout.headerSize) } catch { close(fd); throw error }
        defer { munmap(header, Layout.headerSize) }
        // A new memfd reads as zeroes: counts, sequences and checkpoint are 0.
        let words = header.assumingMemoryBound(to: UInt64.self)
        words[Field.versionAndBlockSize.rawValue] = UInt64(Self.version) | UInt64(blockSize) << 32
        words[Field.capacity.rawValue] = UInt64(capacityBlocks)
        bento_store_release(words + Field.magic.rawValue, Self.magic)
        return fd
    }

    /// Maps the journal in `fd`, a memfd a previous process made (handed
    /// back by the fd store), and takes the descriptor over: it is closed
    /// when the journal is freed, also when this throws. Refuses anything
    /// that is not a journal for `cache`'s block size and device, or whose
    /// header or slot table does not check out; never faults on a short or
    /// foreign descriptor.
    public init(adopting fd: Int32, cache: any BufferCache) throws(OpenError) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { let err = errno; close(fd); throw .system("fstat", err) }
        let size = Int(st.st_size)
        switch bento_memfd_is_sealed(fd) {
        case 1: break
        case 0: close(fd); throw .invalid("the memfd is not sealed against shrinking")
        default: close(fd); throw .invalid("descriptor \(fd) is not a memfd")
        }
        guard size >= Layout.headerSize else { close(fd); throw .invalid("\(size) bytes is too small for a header") }
        let base: UnsafeMutableRawPointer
        do { base = try Self.map(fd, size) } catch { close(fd); throw error }
        let words = base.assumingMemoryBound(to: UInt64.self)
        func refuse(_ reason: String) -> OpenError {
            munmap(base, size); close(fd); return .invalid(reason)
        }
        guard words[Field.magic.rawValue] == Self.magic else { throw refuse("bad magic: not an operation journal") }
        let versionAndBlockSize = words[Field.versionAndBlockSize.rawValue]
        guard UInt32(truncatingIfNeeded: versionAndBlockSize) == Self.version else {
            throw refuse("version \(UInt32(truncatingIfNeeded: versionAndBlockSize)), this code reads \(Self.version)")
        }
        guard versionAndBlockSize >> 32 == UInt64(cache.blockSize) else {
            throw refuse("block size \(versionAndBlockSize >> 32), the device's is \(cache.blockSize)")
        }
        let capacity = words[Field.capacity.rawValue]
        guard capacity > 0, capacity <= UInt64(Self.maxCapacity) else { throw refuse("capacity \(capacity) out of range") }
        let layout = Layout(capacity: Int(capacity), blockSize: cache.blockSize)
        guard layout.total <= size else { throw refuse("\(size) bytes is too small for \(capacity) slots") }
        let slotCount = words[Field.slotCount.rawValue]
        let committed = words[Field.committed.rawValue]
        guard slotCount <= capacity else { throw refuse("slot count \(slotCount) above capacity \(capacity)") }
        guard words[Field.resetAt.rawValue] <= committed else { throw refuse("reset after the last operation") }
        let table = (base + layout.table).assumingMemoryBound(to: UInt64.self)
        var index = IntegerMap<Int>(minimumCapacity: Int(slotCount))
        for slot in 0..<Int(slotCount) {
            let block = table[slot]
            guard block < cache.device.blockCount else { throw refuse("slot \(slot) names block \(block), past the device") }
            guard index[block] == nil else { throw refuse("block \(block) in two slots") }
            index[block] = slot
        }
        self.fd = fd
        self.cache = cache
        self.capacity = Int(capacity)
        self.blockSize = cache.blockSize
        self.layout = layout
        self.base = base
        self.length = size
        self.index = index
        // Images an operation wrote before it died are not current and never
        // will be: forget their numbers, so that the next operation, which
        // gets the same number, cannot make them current by publishing.
        let sequences = (base + layout.sequences).assumingMemoryBound(to: UInt64.self)
        for i in 0..<(2 * self.capacity) where sequences[i] > committed { sequences[i] = 0 }
    }

    private static func map(_ fd: Int32, _ length: Int) throws(OpenError) -> UnsafeMutableRawPointer {
        let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else { throw .system("mmap", errno) }
        return p
    }

    deinit {
        munmap(base, length)
        close(fd)
    }

    // MARK: Memory

    private var words: UnsafeMutablePointer<UInt64> { base.assumingMemoryBound(to: UInt64.self) }

    @inline(__always) private func load(_ field: Field) -> UInt64 { bento_load_acquire(words + field.rawValue) }
    @inline(__always) private func store(_ field: Field, _ value: UInt64) {
        bento_store_release(words + field.rawValue, value)
    }

    @inline(__always) private func blockNumber(at slot: Int) -> UnsafeMutablePointer<UInt64> {
        (base + layout.table).assumingMemoryBound(to: UInt64.self) + slot
    }

    @inline(__always) private func sequence(_ slot: Int, _ side: Int) -> UnsafeMutablePointer<UInt64> {
        (base + layout.sequences).assumingMemoryBound(to: UInt64.self) + 2 * slot + side
    }

    @inline(__always) private func image(_ slot: Int, _ side: Int) -> UnsafeMutableRawPointer {
        base + layout.images + (2 * slot + side) * blockSize
    }

    /// The side of `slot` holding its latest complete image, if any.
    @inline(__always) private func currentSide(_ slot: Int, committed: UInt64) -> Int? {
        let a = sequence(slot, 0).pointee, b = sequence(slot, 1).pointee
        let aValid = a != 0 && a <= committed, bValid = b != 0 && b <= committed
        switch (aValid, bValid) {
        case (true, true): return a > b ? 0 : 1
        case (true, false): return 0
        case (false, true): return 1
        case (false, false): return nil
        }
    }

    // MARK: OperationJournal

    public func record(_ blocks: [UInt64]) throws {
        try record(blocks, stoppingAfter: nil)
    }

    /// `record`, but with `stoppingAfter` it stops dead after copying that
    /// many blocks, as a SIGKILL would, leaving memory as it is: for tests.
    /// The instance must not be used afterwards; adopt the memfd instead.
    @_spi(Testing)
    public func record(_ blocks: [UInt64], stoppingAfter stop: Int?) throws {
        guard !blocks.isEmpty else { return }
        mutex.lock(); defer { mutex.unlock() }
        let committed = load(.committed)
        let number = committed &+ 1
        var count = Int(load(.slotCount))
        // All or nothing: refuse before touching anything.
        if count + blocks.count > capacity {
            var fresh = Set<UInt64>()
            for b in blocks where index[b] == nil { fresh.insert(b) }
            guard count + fresh.count <= capacity else { throw Errno.ENOSPC }
        }
        let deviceBlocks = cache.device.blockCount
        guard blocks.allSatisfy({ $0 < deviceBlocks }) else { throw Errno.EINVAL }
        let firstNew = count
        var copied = 0
        do {
            for b in blocks {
                if stop == copied { return }
                if let slot = index[b] {
                    let side = currentSide(slot, committed: committed) == 0 ? 1 : 0
                    try copy(b, into: image(slot, side))
                    sequence(slot, side).pointee = number
                } else {
                    let slot = count
                    sequence(slot, 1).pointee = 0  // a stale image from before the last reset
                    try copy(b, into: image(slot, 0))
                    sequence(slot, 0).pointee = number
                    blockNumber(at: slot).pointee = b
                    index[b] = slot
                    count += 1
                }
                copied += 1
            }
        } catch {
            // Nothing was published; take back what this operation wrote.
            for slot in 0..<count {
                for side in 0..<2 where sequence(slot, side).pointee == number { sequence(slot, side).pointee = 0 }
            }
            for slot in firstNew..<count { index[blockNumber(at: slot).pointee] = nil }
            throw error
        }
        if count != firstNew { store(.slotCount, UInt64(count)) }
        store(.committed, number)  // the operation takes effect here
    }

    private func copy(_ block: UInt64, into target: UnsafeMutableRawPointer) throws {
        try cache.withBlock(block) { data in target.copyMemory(from: data.baseAddress!, byteCount: blockSize) }
    }

    public func reset(checkpoint: UInt64) {
        mutex.lock(); defer { mutex.unlock() }
        store(.slotCount, 0)
        store(.resetAt, load(.committed))
        store(.checkpoint, checkpoint)
        index.removeAll(keepingCapacity: true)
    }

    public var checkpoint: UInt64 {
        mutex.lock(); defer { mutex.unlock() }
        return load(.checkpoint)
    }

    public var pendingOperations: UInt64 {
        mutex.lock(); defer { mutex.unlock() }
        return load(.slotCount) == 0 ? 0 : load(.committed) &- load(.resetAt)
    }

    /// Blocks recorded since the last reset (including any whose only
    /// image a dead process left unfinished).
    public var pendingBlockCount: Int {
        mutex.lock(); defer { mutex.unlock() }
        return Int(load(.slotCount))
    }

    public func forEachPending(_ body: (_ block: UInt64, _ contents: UnsafeRawBufferPointer) throws -> Void) rethrows {
        mutex.lock(); defer { mutex.unlock() }
        let committed = load(.committed)
        for slot in 0..<Int(load(.slotCount)) {
            guard let side = currentSide(slot, committed: committed) else { continue }
            try body(blockNumber(at: slot).pointee, UnsafeRawBufferPointer(start: image(slot, side), count: blockSize))
        }
    }
}
