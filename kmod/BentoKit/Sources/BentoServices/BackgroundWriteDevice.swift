import BentoKit
import Glibc

/// A block device with a writer thread in front. `writeLater` hands the
/// thread copies of blocks and returns; the thread writes them while the
/// caller goes on. `flush` first waits for those writes, so that "every
/// write issued before it" includes them; once one of them has failed,
/// every flush fails with EIO, as a later fsync reports a failed writeback.
/// Reads and writes pass straight through.
///
/// The buffer cache puts one in front of its device, so that a commit's
/// home writes leave the request path (`BufferCache.writeBackLater`): the
/// log's next flush, before it reuses the log area, waits for them.
public final class BackgroundWriteDevice: BlockDevice, @unchecked Sendable {
    public let base: any BlockDevice
    public let blockSize: Int
    public let blockCount: UInt64
    private let queue: WriteQueue

    public init(_ base: any BlockDevice) {
        self.base = base
        blockSize = base.blockSize
        blockCount = base.blockCount
        queue = WriteQueue(base)
        Self.live.add(queue)
    }

    deinit { queue.stop() }

    public func read(block: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try base.read(block: block, into: buffer)
    }

    public func write(block: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        try base.write(block: block, from: buffer)
    }

    public func write(blocks first: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        try base.write(blocks: first, from: buffer)
    }

    public func flush() throws {
        let failed = queue.waitIdle()
        try base.flush()
        if failed { throw Errno.EIO }
    }

    /// Waits for the writes handed over before, without flushing.
    public func waitForWrites() { _ = queue.waitIdle() }

    /// Waits for every writer in the process: a test that simulates the
    /// death of a process lets its writes land first, as a dead process
    /// writes nothing after its death.
    @_spi(Testing)
    public static func waitForAllWrites() {
        for queue in live.all() { _ = queue.waitIdle() }
    }

    private static let live = LiveQueues()

    /// Queues a batch of at most `count` blocks: `copy` fills the memory it
    /// is given with up to `count` blocks, one after another, and returns
    /// their numbers in that order. `written` runs on the writer thread
    /// once they are written, with the ones that failed. One batch at a
    /// time: this waits for the last one first.
    public func writeLater(count: Int, copy: (UnsafeMutableRawPointer) -> [UInt64],
                           written: @escaping @Sendable (_ blocks: [UInt64], _ failed: Set<UInt64>) -> Void) {
        queue.submit(count: count, copy: copy, written: written)
    }
}

/// Every write queue in the process, for `waitForAllWrites`.
private final class LiveQueues: @unchecked Sendable {
    private struct Weak { weak var queue: WriteQueue? }
    private let mutex = PthreadMutex()
    private var queues: [Weak] = []

    func add(_ queue: WriteQueue) {
        mutex.withLock {
            queues.removeAll { $0.queue == nil }
            queues.append(Weak(queue: queue))
        }
    }

    func all() -> [WriteQueue] { mutex.withLock { queues.compactMap(\.queue) } }
}

/// The writer thread and what it shares with the submitters. The thread
/// holds the queue, not the device, so that the device can go away.
private final class WriteQueue: @unchecked Sendable {
    private let base: any BlockDevice
    private let blockSize: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Keeps submitters apart while one fills the copies.
    private let submitting = PthreadMutex()

    // Guarded by `mutex`; `blocks` and `written` belong to the thread
    // while `busy`.
    private var busy = false
    private var failed = false
    private var stopping = false
    private var thread: pthread_t?
    private var blocks: [UInt64] = []
    private var written: (@Sendable ([UInt64], Set<UInt64>) -> Void)?

    /// The batch's copies; only the submitter touches them while the
    /// queue is idle, only the thread while it is busy.
    private var copies: UnsafeMutableRawPointer?
    private var copiesCapacity = 0

    init(_ base: any BlockDevice) {
        self.base = base
        blockSize = base.blockSize
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        copies?.deallocate()
        pthread_cond_destroy(changed); changed.deallocate()
        pthread_mutex_destroy(mutex); mutex.deallocate()
    }

    /// Waits until no batch is queued or being written; returns whether a
    /// write has ever failed.
    func waitIdle() -> Bool {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        while busy { pthread_cond_wait(changed, mutex) }
        return failed
    }

    func submit(count: Int, copy: (UnsafeMutableRawPointer) -> [UInt64],
                written: @escaping @Sendable ([UInt64], Set<UInt64>) -> Void) {
        submitting.withLock {
            _ = waitIdle()
            if count > copiesCapacity {
                copies?.deallocate()
                // Aligned, for a device opened with O_DIRECT.
                copies = UnsafeMutableRawPointer.allocate(byteCount: count * blockSize, alignment: 4096)
                copiesCapacity = count
            }
            let batch = copy(copies!)
            guard !batch.isEmpty else { return }
            pthread_mutex_lock(mutex)
            if thread == nil { startThread() }
            blocks = batch
            self.written = written
            busy = true
            let inline = thread == nil
            pthread_cond_broadcast(changed)
            pthread_mutex_unlock(mutex)
            if inline { writeBatch() }
        }
    }

    /// Stops the thread once it has written what it holds.
    func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(changed)
        let running = thread
        pthread_mutex_unlock(mutex)
        guard let running else { return }
        // The last batch's `written` may hold the last reference to the
        // device's owner: then the device ends on the thread itself.
        if pthread_equal(running, pthread_self()) != 0 { pthread_detach(running) } else { pthread_join(running, nil) }
    }

    private func startThread() {
        var id = pthread_t()
        let queue = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(&id, nil, { arg in
            let queue = Unmanaged<WriteQueue>.fromOpaque(arg!).takeRetainedValue()
            queue.run()
            return nil
        }, queue)
        if created == 0 {
            thread = id
        } else {
            // No thread: the submitter's batch is written at once instead.
            Unmanaged<WriteQueue>.fromOpaque(queue).release()
        }
    }

    private func run() {
        pthread_mutex_lock(mutex)
        while true {
            while !busy && !stopping { pthread_cond_wait(changed, mutex) }
            guard busy else { break }
            pthread_mutex_unlock(mutex)
            writeBatch()
            pthread_mutex_lock(mutex)
        }
        pthread_mutex_unlock(mutex)
    }

    /// Writes the batch, tells its submitter, and goes idle. Runs on the
    /// thread; without one, in `submit`'s caller (see `startThread`).
    private func writeBatch() {
        var lost: Set<UInt64> = []
        // Neighbouring blocks, one after another in the batch, go in one
        // write (a file written in order is one run).
        var start = 0
        while start < blocks.count {
            var end = start + 1
            while end < blocks.count && blocks[end] == blocks[end - 1] + 1 { end += 1 }
            let data = UnsafeRawBufferPointer(start: copies! + start * blockSize, count: (end - start) * blockSize)
            do { try base.write(blocks: blocks[start], from: data) } catch {
                // Which of them failed: one at a time.
                for i in start..<end {
                    let one = UnsafeRawBufferPointer(start: copies! + i * blockSize, count: blockSize)
                    do { try base.write(block: blocks[i], from: one) } catch { lost.insert(blocks[i]) }
                }
            }
            start = end
        }
        do {
            // Released before the lock is taken: see `stop`.
            let done = written
            written = nil
            done?(blocks, lost)
        }
        pthread_mutex_lock(mutex)
        if !lost.isEmpty { failed = true }
        busy = false
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
    }
}
