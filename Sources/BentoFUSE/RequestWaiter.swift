import CFlightRecorder
import Glibc
import Synchronization

/// How the loop threads wait for the kernel's next request: one at a time,
/// polling for a short while before it sleeps (Docs/caching.md, "Waiting
/// for requests").
///
/// A request's round trip costs two wake-ups, the daemon's and the
/// caller's. On a machine whose idle CPUs halt (a virtual machine above
/// all), waking a sleeping thread costs more than a metadata request's
/// work. So one thread, the reader, polls /dev/fuse for up to
/// `pollNanoseconds` before it sleeps in read(2): a caller that makes one
/// call after another (tar, cp, git) finds it awake. The others wait for
/// their turn here, not on /dev/fuse, where the kernel would wake one of
/// them for every request.
///
/// A lone caller's requests thus all go to one thread, without a wake-up.
/// When the reader finds another request already waiting as it takes
/// one, callers are many: polling would only take CPU time from them, so
/// for `busyNanoseconds` the reader sleeps in read(2) at once. Threads
/// still read one at a time (up to `busyReaders`): the thread back from
/// serving takes the next queued request without a wake-up, where threads
/// asleep in read(2) would each be woken for one (Docs/caching.md). Should
/// the request a reader took block (an fsync, a lock), the watchdog hands
/// the turn on after `rescueNanoseconds`; a thread that will wait for
/// requests through this same mount calls `handOff()` first.
final class RequestWaiter: @unchecked Sendable {
    /// 0: no polling; every thread sleeps in read(2), as libfuse's do.
    let pollNanoseconds: UInt64
    /// How many threads may read at once while callers are many: half the
    /// CPUs, for the callers need the others (measured on 2 CPUs only).
    let busyReaders: Int
    /// How long requests may wait unread while the last reader is blocked
    /// in its request's work,
    static let rescueNanoseconds: UInt64 = 1_000_000
    /// and while it runs: handing the turn on to a thread that would wait
    /// for the same CPUs and the same module lock gains little and costs
    /// wake-ups, unless the work is long.
    static let longNanoseconds: UInt64 = 10_000_000
    /// How long not to poll after seeing requests queue up.
    static let busyNanoseconds: UInt64 = 10_000_000
    /// How many takes in a row must find another request queued: a lone
    /// caller's close queues a RELEASE that needs no wait, and its next
    /// call comes right behind.
    static let busyStreak = 3
    /// How long the watchdog stays awake after the last hand-off it
    /// might have had to make.
    static let watchNanoseconds: UInt64 = 100_000_000

    /// Until when the reader does not poll (many callers).
    private let busyUntil = Atomic<UInt64>(0)
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Threads waiting for their turn to read.
    private let turn = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// The watchdog, when it sleeps.
    private let watch = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // All below under `lock`.
    /// Threads polling or asleep in read(2).
    private var reading = 0
    private var waiting = 0
    /// When the last reader took a request and left no reader behind
    /// (0: a thread reads, or none waits that could).
    private var unreadSince: UInt64 = 0
    private var lastUnread: UInt64 = 0
    /// The thread that took the request at `unreadSince`.
    private var serving: pid_t = 0
    private var watchdogAsleep = false
    private var watchdogStarted = false
    /// Without a watchdog, every thread reads as libfuse does.
    private var watchdogRunning = false
    private var ended = false
    /// Takes in a row that found another request queued behind.
    private var queuedStreak = 0

    /// Polls only with two CPUs or more: on one, it would keep the caller
    /// from running.
    init(pollMicroseconds: Int, busyReaders: Int? = nil) {
        let processors = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        pollNanoseconds = processors >= 2 ? UInt64(max(0, pollMicroseconds)) * 1000 : 0
        self.busyReaders = max(1, busyReaders ?? processors / 2)
        pthread_mutex_init(lock, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(turn, &attributes)
        pthread_cond_init(watch, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    /// Reads the next request into `buffer`, as read(2) on `fd` would;
    /// calls `beforeSleeping` first when it may sleep in read(2).
    func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ length: Int, beforeSleeping: () -> Void = {}) -> Int {
        guard pollNanoseconds > 0 else {
            beforeSleeping()
            return Glibc.read(fd, buffer, length)
        }
        pthread_mutex_lock(lock)
        if !watchdogStarted { startWatchdog() }
        guard watchdogRunning else {
            // No watchdog would hand the turn on: read as libfuse does.
            pthread_mutex_unlock(lock)
            beforeSleeping()
            return Glibc.read(fd, buffer, length)
        }
        while reading >= (busy() ? busyReaders : 1) && !ended {
            waiting += 1
            pthread_cond_wait(turn, lock)
            waiting -= 1
        }
        reading += 1
        unreadSince = 0
        pthread_mutex_unlock(lock)

        // While callers are many, neither polls nor looks whether more
        // requests queue: each would be one more system call per request.
        let polling = !busy()
        var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        if polling {
            let start = Self.now()
            while poll(&ready, 1, 0) == 0, Self.now() &- start < pollNanoseconds {}
        }
        if ready.revents == 0 { beforeSleeping() }
        let count = Glibc.read(fd, buffer, length)
        let saved = errno
        let queued = polling && count > 0 && Self.pending(fd)

        pthread_mutex_lock(lock)
        reading -= 1
        if count < 0 && saved == ENODEV {
            ended = true  // unmounted: every thread leaves the loop
            pthread_cond_broadcast(turn)
            pthread_cond_signal(watch)
        } else {
            queuedStreak = queued ? queuedStreak + 1 : 0
            if queuedStreak >= Self.busyStreak {
                // Callers are many: stop polling for a while.
                queuedStreak = 0
                busyUntil.store(Self.now() &+ Self.busyNanoseconds, ordering: .relaxed)
                if busyReaders > 1 { pthread_cond_broadcast(turn) }
            }
            if reading == 0 && waiting > 0 {
                // The thread comes back to read once it has served; until
                // then the watchdog keeps an eye on the requests behind.
                unreadSince = Self.now()
                lastUnread = unreadSince
                serving = pid_t(bento_thread_id())
                if watchdogAsleep { pthread_cond_signal(watch) }
            }
        }
        pthread_mutex_unlock(lock)
        errno = saved
        return count
    }

    /// Called by a thread that took a request and is about to wait for
    /// the kernel to send more through this mount: lets a waiting thread
    /// read them now rather than when the watchdog would.
    func handOff() {
        pthread_mutex_lock(lock)
        if reading == 0 && waiting > 0 {
            unreadSince = 0
            pthread_cond_signal(turn)
        }
        pthread_mutex_unlock(lock)
    }

    private func busy() -> Bool { Self.now() < busyUntil.load(ordering: .relaxed) }

    /// Hands the turn on when requests may have waited unread too long.
    private func watchdog() {
        pthread_mutex_lock(lock)
        while !ended {
            let now = Self.now()
            if unreadSince != 0, reading == 0, waiting > 0 {
                if now &- unreadSince >= Self.rescueNanoseconds {
                    let since = unreadSince, thread = serving
                    pthread_mutex_unlock(lock)
                    let running = Self.isRunning(thread)
                    pthread_mutex_lock(lock)
                    guard unreadSince == since else { continue }  // it came back meanwhile
                    if running && now &- since < Self.longNanoseconds {
                        sleep(on: watch, until: now &+ Self.rescueNanoseconds)
                    } else {
                        unreadSince = 0
                        pthread_cond_signal(turn)
                    }
                } else {
                    sleep(on: watch, until: unreadSince &+ Self.rescueNanoseconds)
                }
            } else if now &- lastUnread < Self.watchNanoseconds {
                sleep(on: watch, until: now &+ Self.rescueNanoseconds)
            } else {
                watchdogAsleep = true
                pthread_cond_wait(watch, lock)
                watchdogAsleep = false
            }
        }
        pthread_mutex_unlock(lock)
    }

    private func sleep(on condition: UnsafeMutablePointer<pthread_cond_t>, until deadline: UInt64) {
        var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        _ = pthread_cond_timedwait(condition, lock, &time)
    }

    private func startWatchdog() {
        watchdogStarted = true
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        guard pthread_create(&thread, nil, { context in
            let waiter = Unmanaged<RequestWaiter>.fromOpaque(context!).takeRetainedValue()
            waiter.watchdog()
            return nil
        }, context) == 0 else {
            Unmanaged<RequestWaiter>.fromOpaque(context).release()
            return
        }
        pthread_detach(thread)
        watchdogRunning = true
    }

    /// Whether the thread is on a CPU or waiting for one, rather than
    /// asleep (its state in /proc is R). False when that cannot be read.
    static func isRunning(_ thread: pid_t) -> Bool {
        let fd = open("/proc/self/task/\(thread)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var text = [UInt8](repeating: 0, count: 512)
        let count = Glibc.read(fd, &text, text.count)
        // "tid (name) S ...": the name may hold spaces and parentheses.
        guard count > 0, let close = text[..<count].lastIndex(of: UInt8(ascii: ")")), close + 2 < count else { return false }
        return text[close + 2] == UInt8(ascii: "R")
    }

    /// Whether the kernel has a request waiting to be read.
    static func pending(_ fd: Int32) -> Bool {
        var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&ready, 1, 0) > 0
    }

    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }
}
