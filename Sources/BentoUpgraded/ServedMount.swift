@_spi(Host) import BentoKit
import BentoControl
import BentoFUSE
import BentoHost
import BentoServices
import BentoSystemd
import Glibc
import Logging

/// One mount the daemon serves: the image, the module instance on it, and
/// the FUSE session with its request loop on a thread of its own.
final class ServedMount: @unchecked Sendable {
    struct Settings: Sendable {
        var image: String
        var mountpoint: String
        var module: String
        var threads = 16
        var cacheMiB = 256
        var allowOther = false
        var writebackCache = true
    }

    let settings: Settings
    /// The module serving now; changed only by an upgrade, read by status
    /// requests on other threads, hence the lock.
    var loaded: LoadedModule {
        get { pthread_mutex_lock(loadedLock); defer { pthread_mutex_unlock(loadedLock) }; return current }
        set { pthread_mutex_lock(loadedLock); current = newValue; pthread_mutex_unlock(loadedLock) }
    }
    private var current: LoadedModule
    private let loadedLock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    let server: FuseServer
    /// The host's services under the module: they outlive each instance.
    let superBlock: SuperBlock
    /// Each answered operation's blocks, in a memfd that outlives us.
    let journal: SharedMemoryJournal
    /// The previous process's journal was unusable: the fd store must get this one.
    private let journalReplaced: Bool
    /// Held for the length of an upgrade: one at a time per mount.
    let upgrading = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let fd: Int32
    /// How this process came to serve the mount.
    let origin: Origin
    private let log: Logger
    private let finished = Semaphore()
    /// Called on the loop thread once the loop has ended and the file
    /// system is flushed.
    var onFinish: (@Sendable () -> Void)?

    enum Origin {
        /// Mounted by this process.
        case mounted
        /// Taken from the fd store after a restart, with the state the old
        /// process exported.
        case restarted(stateBytes: Int)
        /// Taken from the fd store after a crash: recovered from the disk.
        case recovered
    }

    /// Loads the module, mounts the image with it, and mounts it through
    /// FUSE, or takes over the FUSE session a previous process left in the
    /// fd store (`stored`); throws a message naming what went wrong.
    init(_ settings: Settings, log: Logger, stored: FdStore.Stored? = nil) throws {
        var log = log
        log[metadataKey: "mount"] = "\(settings.mountpoint)"
        self.settings = settings
        self.log = log
        pthread_mutex_init(loadedLock, nil)
        current = try ModuleLoader.load(path: settings.module)
        let descriptor = current.descriptor
        let device: FileBlockDevice
        do { device = try FileBlockDevice(path: settings.image, direct: true) } catch { throw Failure("\(error)") }
        let cache = LRUBufferCache(device: device, capacity: settings.cacheMiB * 256)
        // The operation journal: answered operations survive our death. A
        // restarted process takes the previous one's, with what it holds.
        var adopted: SharedMemoryJournal?
        if let fd = stored?.journal {
            do { adopted = try SharedMemoryJournal(adopting: fd, cache: cache) } catch {
                log.error("the previous process's operation journal is unusable (\(error)): operations it answered since its last commit are lost")
            }
        }
        do { journal = try adopted ?? SharedMemoryJournal(cache: cache) } catch { throw Failure("operation journal: \(error)") }
        journalReplaced = stored?.journal != nil && adopted == nil
        superBlock = SuperBlock(cache: cache, journal: journal, kernelMayHoldInodes: stored?.fuse != nil) { [log] message in log.info("\(message)") }
        pthread_mutex_init(upgrading, nil)
        var fileSystem: (any FileSystem)?
        var origin = Origin.mounted
        if let stored, stored.fuse != nil {
            origin = .recovered
            if let state = stored.state {
                do {
                    fileSystem = try current.module.restore(superBlock, from: state)
                    origin = .restarted(stateBytes: state.bytes.count)
                } catch {
                    log.warning("the state the previous process saved (\(state.format)) could not be imported: \(error); recovering from the disk instead")
                }
            }
        }
        self.origin = origin
        do {
            if fileSystem == nil { fileSystem = try current.module.mount(superBlock) }
        } catch {
            let errno = error as? Errno
            throw Failure("\(settings.image): \(descriptor.fileSystem) \(descriptor.version) cannot mount it: "
                          + "\(errno.map { "\($0)" } ?? "\(error)")" + (errno == .EUCLEAN ? " (run fsck)" : ""))
        }
        server = FuseServer(fileSystem: fileSystem!, writebackCache: settings.writebackCache)
        if let fuse = stored?.fuse, let initRequest = stored?.initRequest {
            fd = fuse
            // A record without the flag comes from a daemon that did not
            // keep it: stripping O_APPEND is right whatever the kernel caches.
            try server.adopt(fd: fd, initRequest: initRequest, writebackCache: stored?.writebackCache ?? true)
            return
        }
        fd = try FuseMount.mount(at: settings.mountpoint, source: settings.image, type: descriptor.fileSystem,
                                 allowOther: settings.allowOther)
        do { try server.attach(fd: fd) } catch {
            FuseMount.unmount(settings.mountpoint)
            close(fd)
            throw error
        }
    }

    /// Starts the request loop, and a commit every few seconds so that an
    /// idle file system does not keep changes only in memory. An adopted
    /// session first has the kernel resend what the old process read.
    func start() {
        let module = "\(loaded.descriptor.fileSystem) \(loaded.descriptor.version)"
        var fields = ["module": loaded.path, "image": settings.image, "version": "\(loaded.descriptor.version)"]
        switch origin {
        case .mounted:
            log.event(.mountServing, "serving \(settings.image) at \(settings.mountpoint) with \(module)", fields)
        case .restarted(let bytes):
            fields["state_bytes"] = "\(bytes)"
            log.event(.adopted, "took \(settings.mountpoint) over after a restart: \(module) imported \(bytes) bytes of state", fields)
        case .recovered:
            log.event(.recovered, "took \(settings.mountpoint) over after the previous process died: \(module) recovered it from the disk", fields)
        }
        if case .mounted = origin {} else {
            do { try server.requestResend() } catch { log.error("\(error): requests the old process read may hang") }
        }
        Thread.start { [self] in
            _ = server.run(maxThreads: settings.threads)
            server.gate.pass {
                do { try server.fileSystem.destroy() } catch { log.error("flushing on unmount failed: \(error)") }
            }
            server.destroySession()
            close(fd)
            // Gone for good: a restarted daemon must not take it over.
            FdStore.forget(mountpoint: settings.mountpoint)
            log.event(.mountStopped, "unmounted \(settings.mountpoint)", ["image": settings.image])
            finished.signal()
            onFinish?()
        }
        Thread.start { [self] in
            while !finished.wait(seconds: 5) {
                server.gate.pass { try? server.fileSystem.sync() }
            }
        }
    }

    /// What `bentoctl status` shows of this mount.
    var status: MountStatus {
        let latency = server.stats.latencyMicros
        return MountStatus(mountpoint: settings.mountpoint, image: settings.image,
                           module: ModuleInfo(name: loaded.descriptor.fileSystem, version: "\(loaded.descriptor.version)",
                                              path: loaded.path),
                           state: finished.isSignalled ? "stopped" : "serving",
                           uptimeSeconds: server.stats.uptimeSeconds, operations: server.stats.operationCounts,
                           resentRetries: server.stats.resendRetries,
                           latencyMicros: LatencySummary(p50: latency.p50, p90: latency.p90, p99: latency.p99, max: latency.max))
    }

    /// Unmounts and waits until the loop has ended and everything is flushed.
    func stop() {
        server.stop()
        FuseMount.unmount(settings.mountpoint)
        finished.wait()
        finished.signal()  // leave it signalled for anyone else waiting
    }

    /// Once the kernel's INIT is in, stores what a restarted daemon needs
    /// to take the mount over. Returns false if the session never started.
    func keepInFdStore(waitingSeconds: Double = 10) -> Bool {
        var waited = 0.0
        var negotiated = server.negotiated
        while negotiated == nil {
            if waited >= waitingSeconds || finished.isSignalled { return false }
            usleep(2_000)
            waited += 0.002
            negotiated = server.negotiated
        }
        if case .mounted = origin {
            if ServiceManager.isManaging && !FdStore.keep(mountpoint: settings.mountpoint, fuse: fd, journal: journal.fd,
                                                          image: settings.image, negotiated: negotiated!) {
                log.warning("\(settings.mountpoint) could not be put in the fd store: a restart will remount it")
            }
        } else {
            FdStore.forget(mountpoint: settings.mountpoint, kinds: [.state])  // imported: never import it twice
            if journalReplaced && !FdStore.replace(journal: journal.fd, mountpoint: settings.mountpoint) {
                log.warning("\(settings.mountpoint): the new operation journal could not be put in the fd store")
            }
        }
        return true
    }

    /// For a restart: stops answering, commits, and leaves the exported
    /// state in the fd store beside the session; the process then exits
    /// without unmounting. Requests read meanwhile wait at the closed gate
    /// and are resent to the next process. Returns the state's size, or
    /// nil when the next process must recover from the disk instead.
    func handOver(quiesceTimeout: Double) -> Int? {
        pthread_mutex_lock(upgrading)  // an upgrade under way finishes first; none starts after
        guard server.gate.close(timeoutNanoseconds: UInt64(quiesceTimeout * 1e9)) else {
            log.warning("requests still running after \(Int(quiesceTimeout * 1000)) ms: the next process recovers from the disk")
            return nil
        }
        let module = loaded.descriptor
        do {
            try server.fileSystem.sync()
            guard let format = module.handoverFormat(to: module) else { return nil }
            let state = try server.fileSystem.exportState(format: format)
            guard FdStore.keep(state: state, mountpoint: settings.mountpoint) else {
                log.warning("the fd store refused the state: the next process recovers from the disk")
                return nil
            }
            return state.bytes.count
        } catch {
            log.warning("state not exported (\(error)): the next process recovers from the disk")
            return nil
        }
    }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A counting semaphore with a timed wait.
final class Semaphore: @unchecked Sendable {
    private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    init() { sem_init(semaphore, 0, 0) }
    deinit { sem_destroy(semaphore); semaphore.deallocate() }
    func signal() { sem_post(semaphore) }
    func wait() { while sem_wait(semaphore) != 0 && errno == EINTR {} }
    /// Signalled now (without consuming it).
    var isSignalled: Bool {
        var value: Int32 = 0
        sem_getvalue(semaphore, &value)
        return value > 0
    }
    /// Returns true when signalled within `seconds`.
    func wait(seconds: Int) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        deadline.tv_sec += seconds
        while sem_timedwait(semaphore, &deadline) != 0 {
            if errno != EINTR { return false }
        }
        sem_post(semaphore)  // keep it signalled: the loop has ended for good
        return true
    }
}

/// A detached pthread running `body`.
enum Thread {
    static func start(_ body: @escaping @Sendable () -> Void) {
        final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        var thread = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        pthread_create(&thread, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        pthread_detach(thread)
    }
}
