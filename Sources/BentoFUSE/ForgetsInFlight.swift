import Glibc
import Synchronization

/// The FORGETs read from the kernel and not yet done. A module frees an
/// unlinked file's space at its FORGET, which the kernel sends once the
/// last user let go of it, just before the unlink(2) returns. A STATFS
/// read after it must see that space free (`rm f; df` shows it at once),
/// but another thread may still be running that FORGET, or not have begun
/// it: the STATFS waits for the FORGETs read before it.
final class ForgetsInFlight: Sendable {
    private let read = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
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

    /// Returns once as many FORGETs are done as had been read when it was
    /// called (later ones do not hold it up), or after the limit.
    func waitForEarlier() {
        let ticket = read.load(ordering: .relaxed)
        let start = RequestWaiter.now()
        while finished.load(ordering: .acquiring) < ticket, RequestWaiter.now() &- start < Self.limitNanoseconds {
            usleep(50)
        }
    }
}
