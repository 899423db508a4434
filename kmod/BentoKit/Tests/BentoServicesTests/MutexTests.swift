import BentoServices
import Glibc
import Testing

/// PthreadMutex and Guarded, which the daemon uses wherever threads share
/// state (ThreadSanitizer sees them).
@Suite struct MutexTests {
    static let each = 20_000

    /// Threads adding to one counter lose no increment.
    @Test func guardedCountsEveryIncrement() {
        let counter = Guarded(0)
        let threads = 4
        var ids: [pthread_t] = []
        let box = Unmanaged.passRetained(counter)
        for _ in 0..<threads {
            var id = pthread_t()
            pthread_create(&id, nil, { raw in
                let counter = Unmanaged<Guarded<Int>>.fromOpaque(raw!).takeUnretainedValue()
                for _ in 0..<MutexTests.each { counter.withLock { $0 += 1 } }
                return nil
            }, box.toOpaque())
            ids.append(id)
        }
        for id in ids { pthread_join(id, nil) }
        box.release()
        #expect(counter.withLock { $0 } == threads * MutexTests.each)
    }

    /// withLockIfAvailable runs nothing while the mutex is held, and runs
    /// once it is free.
    @Test func withLockIfAvailableSkipsWhileHeld() {
        let mutex = PthreadMutex()
        var ran = 0
        let whileHeld: Void? = mutex.withLock { mutex.withLockIfAvailable { ran += 1 } }
        #expect(whileHeld == nil)
        #expect(ran == 0)
        #expect(mutex.withLockIfAvailable { ran += 1 } != nil)
        #expect(ran == 1)
        mutex.withLock { ran += 1 }   // released again: not left locked
        #expect(ran == 2)
    }
}
