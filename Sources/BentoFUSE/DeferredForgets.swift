import BentoKit
import BentoServices
import Glibc
import Synchronization

/// FORGETs put off until the daemon would otherwise wait for its caller.
///
/// The kernel sends a FORGET as the last step of the unlink(2) that takes
/// a file's last name, and the module frees the file's blocks there. Done
/// at once, that work delays the caller's next request, which comes right
/// behind (`rm -rf`: the GETATTR of the directory before the next unlink).
/// Yet after each reply the daemon idles while the caller wakes up, which
/// on a machine whose idle CPUs halt takes several microseconds. So a
/// FORGET is kept here, and the reading thread runs it after its next
/// reply, as long as no request is waiting (Docs/caching.md, "FORGETs
/// after the reply").
///
/// What may not wait for them: any request other than those `rm -rf` and
/// a lookup make (`mayPass`) runs every kept FORGET first, so that a
/// write finds the space an unlink freed, and a STATFS shows it. So does
/// a thread about to sleep in read(2), the hand-over to another process
/// and the unmount. An upgrade keeps them for the new instance: to a
/// module they are FORGETs that came in after the swap.
final class DeferredForgets: @unchecked Sendable {
    /// Beyond this many kept, a FORGET runs at once, as it always used to.
    static let limit = 64
    private let mutex = PthreadMutex()
    private var kept: [(ino: UInt64, count: UInt64)] = []  // under `mutex`
    private let size = Atomic<Int>(0)

    var isEmpty: Bool { size.load(ordering: .relaxed) == 0 }

    /// Keeps a FORGET; false when full (the caller runs it now).
    func keep(_ ino: UInt64, _ count: UInt64) -> Bool {
        mutex.withLock {
            guard kept.count < Self.limit else { return false }
            kept.append((ino, count))
            size.store(kept.count, ordering: .relaxed)
            return true
        }
    }

    /// The oldest FORGET kept, removed.
    func take() -> (ino: UInt64, count: UInt64)? {
        mutex.withLock {
            guard !kept.isEmpty else { return nil }
            let first = kept.removeFirst()
            size.store(kept.count, ordering: .relaxed)
            return first
        }
    }

    /// Whether a request of `opcode` may be answered before the FORGETs
    /// kept: LOOKUP, FORGET, GETATTR, UNLINK, RMDIR, OPENDIR, READDIR,
    /// RELEASEDIR, BATCH_FORGET and READDIRPLUS neither need the space nor
    /// show it.
    static func mayPass(opcode: UInt32) -> Bool {
        switch opcode {
        case 1, 2, 3, 10, 11, 27, 28, 29, 42, 44: return true
        default: return false
        }
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Notes whether the request this thread just read is a FORGET: one
    /// with no reply, whose sender runs on and may send its next request
    /// any moment.
    static func noteRead(opcode: UInt32) {
        let forget = opcode == 2 || opcode == 42
        if forget != lastReadWasForget { pthread_setspecific(key, forget ? UnsafeRawPointer(bitPattern: 1) : nil) }
    }

    /// True while this thread's last request was a FORGET.
    static var lastReadWasForget: Bool { pthread_getspecific(key) != nil }
}

extension FuseServer {
    /// Runs the FORGETs kept, one at a time inside the gate, while `more`
    /// says so (default: all of them).
    func runDeferredForgets(while more: () -> Bool = { true }) {
        while !deferredForgets.isEmpty, more() {
            gate.enter()
            // Taken inside the gate: a hand-over, which closes it, finds
            // every FORGET not yet begun still kept.
            forgets.keptStarting()
            guard let forget = deferredForgets.take() else { forgets.keptDone(); gate.leave(); return }
            fileSystem.forget(ino: forget.ino, count: forget.count)
            forgets.keptDone()
            gate.leave()
        }
    }

    /// Runs every FORGET kept unless the request just read into `buffer`
    /// may pass them, and notes whether it is a FORGET.
    func runDeferredForgets(before buffer: UnsafeRawPointer, _ count: Int) {
        guard count >= 8 else { return }
        let opcode = buffer.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        DeferredForgets.noteRead(opcode: opcode)
        if !deferredForgets.isEmpty && !DeferredForgets.mayPass(opcode: opcode) { runDeferredForgets() }
    }

    /// Before a STATFS, and before a WRITE fails for want of space: the
    /// space may be that of a file just unlinked, whose FORGET is still on
    /// its way. The kernel lets requests pass a queued FORGET (up to eight
    /// in a row), and another thread may be running one. While anything
    /// waits in the queue, lets another thread read it, until a FORGET
    /// comes (10 ms at most); then waits for every FORGET read to be done.
    /// False if there was nothing to wait for.
    @discardableResult
    func awaitForgetsBehind() -> Bool {
        let queued = RequestWaiter.pending(fd)
        guard queued || forgets.any else { return false }
        if queued {
            let before = forgets.readSoFar, start = RequestWaiter.now()
            waiter.handOff()
            while forgets.readSoFar == before, RequestWaiter.pending(fd),
                  RequestWaiter.now() &- start < 10_000_000 { usleep(50) }
        }
        forgets.waitForEarlier()
        return true
    }

    /// Runs every FORGET kept on `fs`, from inside the gate, or with the
    /// gate closed (before the state goes to another process).
    public func runKeptForgets(on fs: any FileSystem) {
        while let forget = deferredForgets.take() { fs.forget(ino: forget.ino, count: forget.count) }
    }
}
