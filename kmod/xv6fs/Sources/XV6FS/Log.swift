import BentoKit
import XV6Layout

/// The write-ahead log, after xv6's log.c with group commit.
///
/// Operations run between `begin` and `end`; every metadata or data block an
/// operation changes is modified in the buffer cache and then `record`ed:
/// the log pins it so the cache keeps it in memory, dirty, until the
/// transaction commits. Repeated writes to one block are absorbed. A
/// transaction stays open across operations and commits when the next
/// operation might not fit, on fsync, or when the host asks (`sync`).
///
/// Commit: copy each block into the log area and write the header with a
/// checksum over all of it, flush (the commit point), then write the blocks
/// home: in the background (`writeBackLater`), while the next operations
/// run. The flush that waits for the home writes and makes them durable is
/// deferred to the start of the next commit, before the log area is reused.
///
/// With an operation journal (lent by the host), `end` hands the journal the
/// blocks each operation changed, so that the operations of the open
/// transaction, answered already, survive the death of the host process;
/// each durable commit empties the journal, and the next mount puts back
/// what it holds (`replayJournal`).
final class WriteAheadLog {
    let cache: any BufferCache
    /// The cache's device, fetched once: commit writes to it for every block.
    let device: any BlockDevice
    let headerBlock: UInt64
    let capacity: Int
    /// The most blocks one operation may record: a metadata operation needs
    /// at most `metadataBlocks`; writes and truncations size their chunks
    /// to stay within the budget.
    let operationBudget: Int
    static let metadataBlocks = 16

    /// Home block numbers in this transaction, in the order first recorded.
    private(set) var blocks: [UInt64] = []
    private var recorded: Set<UInt64> = []
    private(set) var sequence: UInt64 = 0
    /// Home writes of the last commit not yet flushed (nor perhaps written:
    /// the device's flush waits for them).
    private(set) var installUnflushed = false
    private var scratch: UnsafeMutableRawBufferPointer
    /// The log area's next contents, gathered by `commit`: allocated at the
    /// first commit (a read-only instance never commits).
    private var staging: UnsafeMutableRawBufferPointer?
    let journal: (any OperationJournal)?
    /// The volume's identity, mixed into the journal's checkpoint.
    private let volumeTag: UInt64
    /// Blocks the current operation changed, each once: kept only for the
    /// journal.
    private var operationBlocks: [UInt64] = []

    init(cache: any BufferCache, superblock: Superblock, journal: (any OperationJournal)?) {
        self.cache = cache
        self.journal = journal
        volumeTag = (superblock.uuid.0 &* 0x9E37_79B9_7F4A_7C15) ^ superblock.uuid.1
        device = cache.device
        headerBlock = UInt64(superblock.logStart)
        capacity = Int(superblock.logBlocks)
        operationBudget = min(128, capacity / 2)
        scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Layout.blockSize, alignment: 4096)
    }

    deinit {
        scratch.deallocate()
        staging?.deallocate()
    }

    var isEmpty: Bool { blocks.isEmpty }

    /// Starts an operation: commits first if it might not fit.
    func begin() throws {
        if blocks.count + operationBudget > capacity { try commit() }
    }

    /// Adds a block the current operation changed to the transaction.
    @inline(__always)
    func record(_ block: UInt64) {
        if recorded.insert(block).inserted {
            blocks.append(block)
            cache.pin(block)
            if journal != nil { operationBlocks.append(block) }
        } else if journal != nil && !operationBlocks.contains(block) {
            operationBlocks.append(block)
        }
    }

    /// Ends an operation that leaves the file system consistent (done, or
    /// failed and undone): the journal gets a copy of every block it
    /// changed. If the journal cannot take them, a commit makes the
    /// operation durable instead.
    func end() throws {
        guard let journal, !operationBlocks.isEmpty else { return }
        defer { operationBlocks.removeAll(keepingCapacity: true) }
        do {
            try journal.record(operationBlocks)
        } catch {
            operationBlocks.removeAll(keepingCapacity: true)
            try commit()
        }
    }

    /// Ends an operation a device error broke off: it may have left the
    /// blocks half changed, so the journal does not hear of it (the file
    /// system commits nothing after a device error either).
    func abandon() {
        operationBlocks.removeAll(keepingCapacity: true)
    }

    /// What the journal builds on: the last commit of this volume.
    var checkpoint: UInt64 { volumeTag ^ sequence }

    /// Commits the open transaction, if any; returns once it is durable.
    func commit() throws {
        guard !blocks.isEmpty else { return }
        // An operation overran its budget: writing past the log area would
        // destroy the inode table, so refuse instead.
        guard blocks.count <= capacity else { throw Errno.EIO }
        if installUnflushed {
            try device.flush()
            installUnflushed = false
        }
        let next = sequence &+ 1
        let homes = blocks.map { UInt32(truncatingIfNeeded: $0) }
        var sum = LogHeader.seed(sequence: next, blocks: homes)
        // The blocks are gathered as they are hashed, and go to the log
        // area in one write.
        if staging == nil {
            staging = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity * Layout.blockSize, alignment: 4096)
        }
        let gathered = staging!
        for (i, home) in blocks.enumerated() {
            try cache.withBlock(home) { data in
                sum = Checksum.combine(sum, copying: data, to: gathered.baseAddress! + i * Layout.blockSize)
            }
        }
        try device.write(blocks: headerBlock + 1,
                         from: UnsafeRawBufferPointer(rebasing: gathered[0..<(blocks.count * Layout.blockSize)]))
        LogHeader(sequence: next, blocks: homes, checksum: sum).encode(into: scratch)
        try device.write(block: headerBlock, from: UnsafeRawBufferPointer(scratch))
        try device.flush()
        sequence = next
        // Durable: the journal's blocks are all in the log now.
        journal?.reset(checkpoint: checkpoint)
        try cache.writeBackLater(blocks)
        for home in blocks { cache.unpin(home) }
        installUnflushed = true
        blocks.removeAll(keepingCapacity: true)
        recorded.removeAll(keepingCapacity: true)
    }

    /// Replays the last committed transaction if it checks out: recovery at
    /// mount. Returns the number of blocks replayed.
    @discardableResult
    func recover(superblock sb: Superblock) throws -> Int {
        guard let header = try committedHeader(superblock: sb) else { return 0 }
        for (i, home) in header.blocks.enumerated() {
            try device.read(block: headerBlock + 1 + UInt64(i), into: scratch)
            try device.write(block: UInt64(home), from: UnsafeRawBufferPointer(scratch))
            cache.discard(UInt64(home))
        }
        try device.flush()
        return header.blocks.count
    }

    /// Recovery for a read-only mount: the last committed transaction goes
    /// into the cache instead of the image, its blocks dirty and pinned so
    /// that reads see them and the cache never drops them. Nothing writes
    /// them back: a read-only instance never commits. Returns the number of
    /// blocks laid over the image.
    @discardableResult
    func recoverInMemory(superblock sb: Superblock) throws -> Int {
        guard let header = try committedHeader(superblock: sb) else { return 0 }
        var overlaid: Set<UInt32> = []
        for (i, home) in header.blocks.enumerated() {
            try device.read(block: headerBlock + 1 + UInt64(i), into: scratch)
            try cache.withMutableBlock(UInt64(home), fill: .zero) { $0.copyMemory(from: UnsafeRawBufferPointer(scratch)) }
            // A later copy of a block wins; pin each block once.
            if overlaid.insert(home).inserted { cache.pin(UInt64(home)) }
        }
        return header.blocks.count
    }

    /// The last committed transaction's header, if it checks out; also
    /// takes its sequence number.
    private func committedHeader(superblock sb: Superblock) throws -> LogHeader? {
        try device.read(block: headerBlock, into: scratch)
        guard let header = LogHeader.decode(UnsafeRawBufferPointer(scratch), capacity: capacity) else { return nil }
        sequence = header.sequence
        var sum = LogHeader.seed(sequence: header.sequence, blocks: header.blocks)
        for (i, home) in header.blocks.enumerated() {
            guard sb.mayLog(UInt64(home)) else { return nil }
            try device.read(block: headerBlock + 1 + UInt64(i), into: scratch)
            sum = Checksum.combine(sum, UnsafeRawBufferPointer(scratch))
            // A superblock may change its feature bits only.
            if UInt64(home) == Layout.superblockNumber && !sb.acceptsLogged(UnsafeRawBufferPointer(scratch)) { return nil }
        }
        guard sum == header.checksum else { return nil }  // torn or stale: never committed
        return header
    }

    /// Puts back the operations a dead instance answered but never
    /// committed, from the journal: at mount, right after `recover`. The
    /// journal's blocks are the latest images of everything those
    /// operations changed, so writing them over the last commit gives the
    /// state after the last of them; they go to disk as one ordinary (power
    /// safe) commit. A journal made for another disk state is ignored.
    /// Returns the blocks and operations put back.
    func replayJournal(superblock sb: Superblock, report: (String) -> Void) throws -> (blocks: Int, operations: UInt64) {
        guard let journal else { return (0, 0) }
        guard journal.pendingOperations > 0 else {
            journal.reset(checkpoint: checkpoint)
            return (0, 0)
        }
        guard journal.checkpoint == checkpoint else {
            report("xv6fs: the operation journal was written against another state of the disk: ignored")
            journal.reset(checkpoint: checkpoint)
            return (0, 0)
        }
        var homes: [UInt64] = []
        journal.forEachPending { block, _ in homes.append(block) }
        guard homes.count <= capacity,
              homes.allSatisfy(sb.mayLog) else {
            report("xv6fs: the operation journal holds blocks the log cannot: ignored")
            journal.reset(checkpoint: checkpoint)
            return (0, 0)
        }
        let operations = journal.pendingOperations
        try journal.forEachPending { block, contents in
            try cache.withMutableBlock(block, fill: .zero) { $0.copyMemory(from: contents) }
            record(block)
        }
        operationBlocks.removeAll(keepingCapacity: true)
        guard !homes.isEmpty else { journal.reset(checkpoint: checkpoint); return (0, operations) }
        try commit()  // empties the journal
        return (homes.count, operations)
    }

    /// Makes the journal hold the open transaction: after taking it over
    /// from another instance, which may have kept no journal (a version
    /// from before journals), so that what the journal holds is exactly
    /// what the cache holds.
    func resynchronizeJournal() throws {
        guard let journal else { return }
        journal.reset(checkpoint: checkpoint)
        guard !blocks.isEmpty else { return }
        do { try journal.record(blocks) } catch { try commit() }
    }

    // MARK: Upgrade state

    struct State {
        var sequence: UInt64
        var blocks: [UInt64]
        var installUnflushed: Bool
    }

    var state: State { State(sequence: sequence, blocks: blocks, installUnflushed: installUnflushed) }

    /// Takes over an open transaction from another instance. Its blocks are
    /// still pinned in the host's cache, so no pin is added.
    func adopt(_ state: State) {
        sequence = state.sequence
        blocks = state.blocks
        recorded = Set(state.blocks)
        installUnflushed = state.installUnflushed
    }
}
