@_spi(Host) import BentoKit
import BentoControl
import BentoFUSE
import BentoHost
import BentoServices
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
    /// Held for the length of an upgrade: one at a time per mount.
    let upgrading = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let fd: Int32
    private let log: Logger
    private let finished = Semaphore()
    /// Called on the loop thread once the loop has ended and the file
    /// system is flushed.
    var onFinish: (@Sendable () -> Void)?

    /// Loads the module, mounts the image with it, and mounts it through
    /// FUSE; throws a message naming what went wrong.
    init(_ settings: Settings, log: Logger) throws {
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
        superBlock = SuperBlock(cache: cache) { [log] message in log.info("\(message)") }
        pthread_mutex_init(upgrading, nil)
        let fileSystem: any FileSystem
        do {
            fileSystem = try current.module.mount(superBlock)
        } catch {
            let errno = error as? Errno
            throw Failure("\(settings.image): \(descriptor.fileSystem) \(descriptor.version) cannot mount it: "
                          + "\(errno.map { "\($0)" } ?? "\(error)")" + (errno == .EUCLEAN ? " (run fsck)" : ""))
        }
        fd = try FuseMount.mount(at: settings.mountpoint, source: settings.image, type: descriptor.fileSystem,
                                 allowOther: settings.allowOther)
        server = FuseServer(fileSystem: fileSystem, writebackCache: settings.writebackCache)
        do { try server.attach(fd: fd) } catch {
            FuseMount.unmount(settings.mountpoint)
            close(fd)
            throw error
        }
    }

    /// Starts the request loop, and a commit every few seconds so that an
    /// idle file system does not keep changes only in memory.
    func start() {
        log.info("serving \(settings.image) at \(settings.mountpoint) with \(loaded.descriptor.fileSystem) \(loaded.descriptor.version)",
                 metadata: ["module": "\(loaded.path)", "image": "\(settings.image)"])
        Thread.start { [self] in
            _ = server.run(maxThreads: settings.threads)
            server.gate.pass {
                do { try server.fileSystem.destroy() } catch { log.error("flushing on unmount failed: \(error)") }
            }
            server.destroySession()
            close(fd)
            log.info("unmounted \(settings.mountpoint)")
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
                           latencyMicros: LatencySummary(p50: latency.p50, p90: latency.p90, p99: latency.p99, max: latency.max))
    }

    /// Unmounts and waits until the loop has ended and everything is flushed.
    func stop() {
        server.stop()
        FuseMount.unmount(settings.mountpoint)
        finished.wait()
        finished.signal()  // leave it signalled for anyone else waiting
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
