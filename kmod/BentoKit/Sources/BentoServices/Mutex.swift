import Glibc

/// A pthread mutex on the heap (its address must not move). Not
/// Synchronization's `Mutex`: ThreadSanitizer does not see that one's
/// futex and reports races on what it guards.
public final class PthreadMutex: @unchecked Sendable {
    @usableFromInline let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    public init() { pthread_mutex_init(mutex, nil) }
    deinit { pthread_mutex_destroy(mutex); mutex.deallocate() }
    @inlinable public func lock() { pthread_mutex_lock(mutex) }
    @inlinable public func unlock() { pthread_mutex_unlock(mutex) }
    @inlinable public func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lock(); defer { unlock() }
        return try body()
    }
    /// Runs body only if the mutex is free now; nil if another thread holds it.
    @inlinable public func withLockIfAvailable<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { unlock() }
        return try body()
    }
}

/// A value only reachable under a PthreadMutex: the same use as
/// Synchronization's `Mutex<Value>`, which ThreadSanitizer does not see.
public final class Guarded<Value>: @unchecked Sendable {
    private let mutex = PthreadMutex()
    private var value: Value
    public init(_ value: Value) { self.value = value }
    public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        try mutex.withLock { () throws(E) -> R in try body(&value) }
    }
}
