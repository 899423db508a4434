import Glibc

/// Admits requests to the file system. For an upgrade it closes: new
/// requests wait at the gate, requests already inside drain, and once the
/// module is swapped the gate reopens.
public final class Gate: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var inside = 0
    private var closed = false

    public init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(changed, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(changed); changed.deallocate()
        pthread_mutex_destroy(mutex); mutex.deallocate()
    }

    /// Waits while the gate is closed, then counts the caller in.
    public func enter() {
        pthread_mutex_lock(mutex)
        while closed { pthread_cond_wait(changed, mutex) }
        inside += 1
        pthread_mutex_unlock(mutex)
    }

    public func leave() {
        pthread_mutex_lock(mutex)
        inside -= 1
        if inside == 0 { pthread_cond_broadcast(changed) }
        pthread_mutex_unlock(mutex)
    }

    /// Runs `body` inside the gate.
    @inline(__always)
    public func pass<R>(_ body: () throws -> R) rethrows -> R {
        enter(); defer { leave() }
        return try body()
    }

    /// Closes the gate and waits until no request is inside, for at most
    /// `timeoutNanoseconds`. Returns false, with the gate open again, when
    /// requests were still inside at the deadline.
    public func close(timeoutNanoseconds: UInt64) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let total = UInt64(deadline.tv_nsec) + timeoutNanoseconds
        deadline.tv_sec += Int(total / 1_000_000_000)
        deadline.tv_nsec = Int(total % 1_000_000_000)
        pthread_mutex_lock(mutex)
        closed = true
        while inside > 0 {
            if pthread_cond_timedwait(changed, mutex, &deadline) == ETIMEDOUT && inside > 0 {
                closed = false
                pthread_cond_broadcast(changed)
                pthread_mutex_unlock(mutex)
                return false
            }
        }
        pthread_mutex_unlock(mutex)
        return true
    }

    /// Opens the gate; returns when it opened (`RequestStats.nanoseconds()`):
    /// the end of the pause, before the waiting requests wake (on a busy
    /// machine they may run before this call returns).
    @discardableResult
    public func reopen() -> UInt64 {
        pthread_mutex_lock(mutex)
        closed = false
        let opened = RequestStats.nanoseconds()
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
        return opened
    }

    /// Requests inside now (for tests and status).
    public var count: Int {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        return inside
    }
}
