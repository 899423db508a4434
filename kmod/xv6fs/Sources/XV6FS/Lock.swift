import Glibc

/// The file system's one lock: every operation runs under it, so the layers
/// below (log, allocator, inodes, directories) need no locking of their own.
final class Lock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    init() { pthread_mutex_init(mutex, nil) }
    deinit { pthread_mutex_destroy(mutex); mutex.deallocate() }
    @inline(__always) func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

func currentTime() -> Timespec {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Timespec(seconds: Int64(ts.tv_sec), nanoseconds: UInt32(ts.tv_nsec))
}

import BentoKit
