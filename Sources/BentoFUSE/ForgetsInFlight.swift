import Glibc
import Synchronization

/// The FORGETs read from the kernel and not yet done. A module frees an
/// unlinked file's space at its FORGET, which the kernel sends once the
/// last user let go of it, just before the unlink(2) returns. A STATFS
/// read after it must see that space free (`rm f; df` shows it at once),
/// but another thread may still be running that FORGET, or not have begun
/// it: the STATFS waits for the FORGETs read before it, and for those kept
/// for after a reply (DeferredForgets) that a thread is running.
final class ForgetsInFlight: Sendable {
    private let read = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    /// Kept FORGETs a thread took to run and has not finished.
    private let keptRunning = Atomic<Int>(0)
    /// How long STATFS waits at most (a FORGET that never ends is the
    /// module's fault, reported elsewhere; df must still answer).
    static let limitNanoseconds: UInt64 = 1_000_000_000

    /// Counts the request just read into `buffer` if it is a FORGET or a
    /// BATCH_FORGET (every one reaches `done`: libfuse hands both to the
    /// host's handlers).
    func noteRead(_ buffer: UnsafeRawPointer, _ length: Int) {
        guard length >= 8 else { return }
        let opcode = buffer.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        if opcode == 2 || opcode == 42 { read.add(1, ordering: .relaxed) }
    }

    func done() { finished.add(1, ordering: .releasing) }

    /// FORGETs read so far.
    var readSoFar: Int { read.load(ordering: .relaxed) }

    /// Around the run of a kept FORGET: called before it is taken, so that
    /// a waiter never misses it.
    func keptStarting() { keptRunning.add(1, ordering: .relaxed) }
    func keptDone() { keptRunning.subtract(1, ordering: .releasing) }

    /// Whether a FORGET read is not done yet, or a kept one is running.
    var any: Bool {
        keptRunning.load(ordering: .acquiring) > 0 || finished.load(ordering: .acquiring) < read.load(ordering: .relaxed)
    }

    /// Returns once as many FORGETs are done as had been read when it was
    /// called, and no kept one is running (later ones may hold it up a
    /// little), or after the limit.
    func waitForEarlier() {
        let ticket = read.load(ordering: .relaxed)
        let start = RequestWaiter.now()
        while finished.load(ordering: .acquiring) < ticket || keptRunning.load(ordering: .acquiring) > 0,
              RequestWaiter.now() &- start < Self.limitNanoseconds {
            usleep(50)
        }
    }
}
