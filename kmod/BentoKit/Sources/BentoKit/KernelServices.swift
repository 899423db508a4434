/// The kernel services the host lends to a module: a block device and a
/// buffer cache in front of it. Both belong to the host and outlive any one
/// module instance, so an upgraded module starts with a warm cache.

/// A device of fixed-size blocks. Writes may sit in a volatile cache until
/// `flush` returns.
public protocol BlockDevice: AnyObject {
    var blockSize: Int { get }
    var blockCount: UInt64 { get }
    func read(block: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws
    func write(block: UInt64, from buffer: UnsafeRawBufferPointer) throws
    /// Writes `buffer`, whole blocks, to block `first` and the ones after
    /// it: one call for a run, where a device over a file makes one system
    /// call. If it fails, any of the blocks may or may not be written.
    func write(blocks first: UInt64, from buffer: UnsafeRawBufferPointer) throws
    /// Returns once every write issued before it is durable.
    func flush() throws
}

extension BlockDevice {
    /// One block at a time.
    public func write(blocks first: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        guard buffer.count % blockSize == 0 else { throw Errno.EIO }
        for i in 0..<(buffer.count / blockSize) {
            try write(block: first + UInt64(i), from: UnsafeRawBufferPointer(rebasing: buffer[(i * blockSize)..<((i + 1) * blockSize)]))
        }
    }
}

/// How a block that is not cached yet gets its first contents.
@frozen
public enum BlockFill: Sendable {
    /// Read it from the device.
    case read
    /// Start from zeroes without reading: for blocks the caller fills whole,
    /// such as freshly allocated ones.
    case zero
}

/// The host's buffer cache. Blocks are reachable only inside scoped closures.
///
/// The cache never writes a dirty block by itself: a block modified through
/// `withMutableBlock` stays dirty in memory until the module calls
/// `writeBack`. It evicts only clean blocks that nobody pins. A closure must
/// not keep the pointer it is given; it may open another block inside it.
public protocol BufferCache: AnyObject {
    var device: any BlockDevice { get }
    var blockSize: Int { get }

    func withBlock<R>(_ block: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R
    /// Gives write access and marks the block dirty.
    func withMutableBlock<R>(_ block: UInt64, fill: BlockFill,
                             _ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R
    /// Pins a cached block: it stays in memory until unpinned as often.
    func pin(_ block: UInt64)
    func unpin(_ block: UInt64)
    func isDirty(_ block: UInt64) -> Bool
    /// Writes the block to the device if it is dirty, and marks it clean.
    func writeBack(_ block: UInt64) throws
    /// Starts writing the dirty ones among `blocks` to the device, as they
    /// are now, and marks them clean; the writes go on after it returns, in
    /// no particular order. The device's `flush` waits for them, and fails
    /// if one of them did. Changes made to a block meanwhile are not
    /// written, and the cache keeps the block until its write is done.
    func writeBackLater(_ blocks: [UInt64]) throws
    /// Drops a block's cached copy, dirty or not (the module freed it).
    func discard(_ block: UInt64)
}

extension BufferCache {
    /// For a cache without a writer of its own: the writes happen at once.
    public func writeBackLater(_ blocks: [UInt64]) throws {
        for block in blocks { try writeBack(block) }
    }

    @inlinable
    public func withMutableBlock<R>(_ block: UInt64,
                                    _ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
        try withMutableBlock(block, fill: .read, body)
    }
}

/// The superblock capability: proof that the module was mounted by the host,
/// and its way to the block device and the buffer cache. Only the host makes
/// one; a module keeps it for the life of its instance.
public final class SuperBlock {
    public let cache: any BufferCache
    public var device: any BlockDevice { cache.device }
    /// Where the module's diagnostics go (the host's log): one line each.
    /// For a failure a request can meet again and again, use `report`.
    public let log: @Sendable (String) -> Void
    /// Where `report` goes: the condition, the error, and the details of
    /// this occurrence (evaluated only if the host writes them).
    private let reporter: @Sendable (StaticString, any Error, () -> String) -> Void
    /// Where the module records each operation's changed blocks so that
    /// they survive the death of the host process; nil when the host keeps
    /// none (then only committed changes survive it).
    public let journal: (any OperationJournal)?
    /// The host resumed a kernel session another process served (it died,
    /// or restarted): the kernel may hold inodes, with lookup counts and
    /// open files, that this instance never saw. A module must then not
    /// free an inode because its own counts say nobody refers to it; an
    /// unlinked inode is free only once the kernel forgets it (or at a
    /// later mount with this flag off). It stays set for the life of the
    /// host process, through live upgrades.
    public let kernelMayHoldInodes: Bool
    /// The host serves this mount read-only: the image may sit on
    /// read-only storage, and the module must write nothing to it (no log
    /// replay, no orphan cleanup, no commit). Operations that would change
    /// the file system fail with EROFS.
    public let readOnly: Bool
    /// What the kernel holds: lookup counts, open handles. The host keeps it
    /// for the life of the mount's process, through upgrades.
    public let references = KernelReferences()
    /// Where the module reports what it changed on its own, so that the
    /// kernel drops what it cached of it. The host keeps it for the life of
    /// the mount's process, through upgrades.
    public let kernelCache = KernelCache()

    @_spi(Host)
    public convenience init(cache: any BufferCache, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.init(cache: cache, journal: nil, kernelMayHoldInodes: false, log: log)
    }

    @_spi(Host)
    public convenience init(cache: any BufferCache, journal: (any OperationJournal)?,
                            log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.init(cache: cache, journal: journal, kernelMayHoldInodes: false, log: log)
    }

    /// `report`: where `report(_:_:detail:)` goes; by default a line of
    /// `log` per occurrence.
    @_spi(Host)
    public init(cache: any BufferCache, journal: (any OperationJournal)?, kernelMayHoldInodes: Bool,
                readOnly: Bool = false,
                log: @escaping @Sendable (String) -> Void = { _ in },
                report: (@Sendable (StaticString, any Error, () -> String) -> Void)? = nil) {
        self.cache = cache
        self.log = log
        self.journal = journal
        self.kernelMayHoldInodes = kernelMayHoldInodes
        self.readOnly = readOnly
        self.reporter = report ?? { condition, error, detail in
            let more = detail()
            log("\(condition) (\(error))" + (more.isEmpty ? "" : ": " + more))
        }
    }

    /// Reports a failure that a request can run into again and again while
    /// a condition lasts (a full disk, a failing device, a damaged object)
    /// and that the module does not pass on to the request: a provenance
    /// record not written, an inode not reclaimed. `condition` says what
    /// did not happen, in the same words every time ("provenance not
    /// recorded"); `detail` says which one, if it matters. The host logs
    /// the first occurrence at once and then counts, with one summary per
    /// interval, where `log` would write a line for each.
    public func report(_ condition: StaticString, _ error: any Error, detail: @autoclosure () -> String = "") {
        reporter(condition, error, detail)
    }
}
