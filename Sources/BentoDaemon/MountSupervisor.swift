import BentoControl
import BentoFUSE
import BentoHost
import BentoServices
import BentoSystemd
import BentoWorker
import Glibc
import Logging
import Synchronization

/// One mount, supervised: the supervisor mounts it and keeps its long-lived
/// descriptors (the /dev/fuse session, the image, the operation journal);
/// a worker process runs the module on them. A worker that dies is
/// replaced by one that adopts the same session and recovers from the disk
/// and the journal: applications see a stall, not an error, and the other
/// mounts see nothing at all.
final class MountSupervisor: @unchecked Sendable {
    let settings: MountSettings
    let log: Logger
    /// The module file the worker serves; changed by upgrades.
    var module: String {
        get { state.withLock { $0.module } }
        set { state.withLock { $0.module = newValue } }
    }
    private let fuse: Int32
    private let image: Int32
    private let journal: Int32
    private let recorder: Int32
    private let stateOut: Int32
    private let stateIn: Int32?
    /// The journal had to be made anew: the fd store must get it.
    private let journalReplaced: Bool
    private let fileSystemType: String
    private let state: Mutex<State>
    /// Signalled once the mount has ended (or could not start).
    private let finished = Semaphore()
    /// Signalled when the first worker serves, or could not.
    private let firstStart = Semaphore()
    private let upgradeRunning = Mutex<Bool>(false)
    /// Called once the mount has ended after serving.
    var onFinish: (@Sendable () -> Void)?

    private struct State {
        var module: String
        var origin: WorkerStart.Origin
        var worker: WorkerProcess?
        var initRequest: [UInt8]?
        var writebackCache: Bool?
        var stopping = false
        var ended = false
        var firstFailure: String?
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Checks the module file, then mounts `settings.image` through FUSE,
    /// or takes over what a previous process left in the fd store
    /// (`stored`). Nothing runs yet: `start` starts the worker.
    init(_ settings: MountSettings, log: Logger, stored: FdStore.Stored? = nil) throws {
        var log = log
        log[metadataKey: "mount"] = "\(settings.mountpoint)"
        self.settings = settings
        self.log = log
        // The module file is checked here, before anything is mounted; only
        // its descriptor is read: its code runs in the worker alone.
        do { fileSystemType = try ModuleLoader.load(path: settings.module).descriptor.fileSystem } catch {
            throw Failure("\(error)")
        }
        image = open(settings.image, O_RDWR | O_CLOEXEC)
        guard image >= 0 else { throw Failure("cannot open \(settings.image): \(String(cString: strerror(errno)))") }
        recorder = ServiceManager.memoryFile(name: "bento-recorder")
        stateOut = ServiceManager.memoryFile(name: "bento-state")
        var origin = WorkerStart.Origin.mounted
        if let stored, let fuse = stored.fuse, stored.initRequest != nil {
            self.fuse = fuse
            origin = stored.state != nil ? .restarted : .recovered
            stateIn = stored.state
            journalReplaced = stored.journal == nil
            if let fd = stored.journal { journal = fd } else {
                log.error("the previous process's operation journal is missing: operations it answered since its last commit are lost")
                journal = try Self.newJournal()
            }
        } else {
            stateIn = nil
            journalReplaced = false
            journal = try Self.newJournal()
            do {
                fuse = try FuseMount.mount(at: settings.mountpoint, source: settings.image, type: fileSystemType,
                                           allowOther: settings.allowOther)
            } catch {
                for fd in [image, journal, recorder, stateOut] { close(fd) }
                throw Failure("\(error)")
            }
        }
        state = Mutex(State(module: settings.module, origin: origin, initRequest: stored?.initRequest,
                            writebackCache: stored?.writebackCache))
    }

    private static func newJournal() throws -> Int32 {
        do { return try SharedMemoryJournal.makeMemoryFile(blockSize: 4096) } catch { throw Failure("\(error)") }
    }

    var origin: WorkerStart.Origin { state.withLock { $0.origin } }

    /// Starts the first worker and the thread that replaces it when it
    /// dies. Throws if the first worker cannot serve: the mount is then
    /// gone (unmounted, out of the fd store).
    func start() throws {
        Thread.start { [self] in supervise() }
        firstStart.wait()
        if let failure = state.withLock({ $0.firstFailure }) { throw Failure(failure) }
    }

    /// The supervising thread: starts a worker, waits for it, and starts
    /// the next one when it dies, until the mount ends.
    private func supervise() {
        var deaths: [Double] = []
        var first = true
        while true {
            if state.withLock({ $0.stopping }) { end(); return }
            let worker: WorkerProcess
            do { worker = try spawnWorker() } catch {
                log.error("\(error)")
                if first { end(firstFailure: "\(error)"); return }
                sleep(1)
                continue
            }
            switch worker.firstReply(timeout: 60) {
            case .started(let initRequest, let writebackCache, _):
                if first { firstServed(initRequest: initRequest, writebackCache: writebackCache) }
            case .failed(let why):
                _ = worker.wait()
                if first { end(firstFailure: why); return }
                log.error("a new worker could not serve \(settings.mountpoint): \(why); trying again")
                sleep(1)
                continue
            default:
                kill(worker.pid, SIGKILL)
                _ = worker.wait()
                if first { end(firstFailure: "the worker did not start serving within 60 s"); return }
                log.error("a new worker of \(settings.mountpoint) did not start serving within 60 s; trying again")
                continue
            }
            if first { first = false; firstStart.signal() }
            let exit = worker.wait()
            let stopping = state.withLock { s -> Bool in
                s.worker = nil
                return s.stopping
            }
            if stopping || exit == .exited(0) {
                if exit != .exited(0) { log.error("the worker of \(settings.mountpoint) ended with \(describe(exit)) while stopping") }
                end()
                return
            }
            // Died: the next worker adopts the session and recovers.
            log.event(.workerDied, level: .error, "the worker of \(settings.mountpoint) (pid \(worker.pid)) died: \(describe(exit)); "
                      + "starting another, which recovers from the disk and the operation journal",
                      ["worker_pid": "\(worker.pid)", "exit": describe(exit)])
            state.withLock { $0.origin = .recovered }
            // A worker that keeps dying at once is given a pause: never a
            // busy loop, whatever the module does.
            let now = RequestStats.now()
            deaths = deaths.filter { now - $0 < 10 } + [now]
            if deaths.count > 3 { usleep(UInt32(min(5.0, 0.05 * Double(1 << min(deaths.count, 7))) * 1e6)) }
        }
    }

    /// A worker on the mount's descriptors, with what the mount is now.
    private func spawnWorker() throws -> WorkerProcess {
        try state.withLock { s in
            let start = WorkerStart(settings: settingsServing(s.module), origin: s.origin, initRequest: s.initRequest,
                                    writebackCache: s.writebackCache)
            let descriptors = WorkerProcess.Descriptors(fuse: fuse, image: image, journal: journal, recorder: recorder,
                                                        stateIn: s.origin == .restarted ? stateIn : nil, stateOut: stateOut)
            s.worker = try WorkerProcess(start, descriptors: descriptors)
            return s.worker!
        }
    }

    /// The first worker serves: what a restarted daemon needs goes to the
    /// fd store (a fresh mount's session; an adopted one drops its state,
    /// which must never be imported twice).
    private func firstServed(initRequest: [UInt8]?, writebackCache: Bool?) {
        let fresh = state.withLock { s -> Bool in
            defer {
                s.initRequest = s.initRequest ?? initRequest
                s.writebackCache = s.writebackCache ?? writebackCache
            }
            return s.origin == .mounted
        }
        guard ServiceManager.isManaging else { return }
        if fresh {
            guard let initRequest else { log.warning("\(settings.mountpoint): the kernel never sent INIT"); return }
            let negotiated = FuseServer.Negotiated(initRequest: initRequest, writebackCache: writebackCache ?? true)
            if !FdStore.keep(mountpoint: settings.mountpoint, fuse: fuse, journal: journal, image: settings.image, negotiated: negotiated) {
                log.warning("\(settings.mountpoint) could not be put in the fd store: a restart will remount it")
            }
        } else {
            FdStore.forget(mountpoint: settings.mountpoint, kinds: [.state])
            if journalReplaced && !FdStore.replace(journal: journal, mountpoint: settings.mountpoint) {
                log.warning("\(settings.mountpoint): the new operation journal could not be put in the fd store")
            }
        }
    }

    /// The mount is over: it ended, or its first worker could not serve
    /// (then it is unmounted, so that nothing waits on a dead mount).
    private func end(firstFailure: String? = nil) {
        let served = state.withLock { s -> Bool in
            s.ended = true
            s.firstFailure = firstFailure
            return firstFailure == nil
        }
        if !served { FuseMount.unmount(settings.mountpoint) }
        FdStore.forget(mountpoint: settings.mountpoint)
        for fd in [fuse, image, journal, recorder, stateOut] + [stateIn].compactMap({ $0 }) { close(fd) }
        finished.signal()
        if served { onFinish?() } else { firstStart.signal() }
    }

    private func settingsServing(_ module: String) -> MountSettings {
        var serving = settings
        serving.module = module
        return serving
    }

    private func describe(_ exit: WorkerProcess.Exit) -> String {
        switch exit {
        case .exited(let code): "exit status \(code)"
        case .signalled(let signal): "signal \(signal) (\(String(cString: strsignal(signal))))"
        }
    }

    var hasEnded: Bool { state.withLock { $0.ended } }

    /// What `bentoctl status` shows: the worker's answer, or what is known
    /// when it cannot answer now.
    var status: MountStatus {
        let (worker, ended, module) = state.withLock { ($0.worker, $0.ended, $0.module) }
        if let worker, case .status(var status)? = worker.call(.status, timeout: 2) {
            if ended { status.state = "stopped" }
            return status
        }
        return MountStatus(mountpoint: settings.mountpoint, image: settings.image,
                           module: ModuleInfo(name: fileSystemType, version: "?", path: module),
                           state: ended ? "stopped" : "restarting", uptimeSeconds: 0, operations: [:], latencyMicros: .zero)
    }

    /// Upgrades (or rolls back) the worker's module; one at a time.
    /// `marking` hears the module left while the upgrade runs, then nil:
    /// a daemon that dies in between comes back on that module.
    func upgrade(to path: String, action: String, quiesceTimeout: Double,
                 marking: (_ upgradingFrom: String?) -> Void) -> UpgradeReport {
        guard upgradeRunning.withLock({ running in
            defer { running = true }
            return !running
        }) else {
            return UpgradeReport(result: UpgradeReport.refused, action: action, mountpoint: settings.mountpoint, module: path,
                                 error: "an upgrade of \(settings.mountpoint) is already running")
        }
        defer { upgradeRunning.withLock { $0 = false } }
        marking(module)
        defer { marking(nil) }
        guard let worker = state.withLock({ $0.worker }),
              case .upgraded(let report)? = worker.call(.upgrade(module: path, action: action, quiesceTimeout: quiesceTimeout)) else {
            return UpgradeReport(result: UpgradeReport.refused, action: action, mountpoint: settings.mountpoint, module: path,
                                 error: "the worker of \(settings.mountpoint) died during the \(action); it comes back on \(module)")
        }
        if report.result == UpgradeReport.upgraded || (action == "rollback" && report.result == UpgradeReport.rolledBack) {
            module = report.module ?? path
        }
        return report
    }

    /// Unmounts; the worker flushes and ends. Waits until it has.
    func stop() {
        state.withLock { $0.stopping = true }
        FuseMount.unmount(settings.mountpoint)
        finished.wait()
        finished.signal()  // leave it signalled for anyone else waiting
    }

    /// For a restart: the worker stops answering and exports its state;
    /// the state memfd joins the mount's fds in the store. Returns the
    /// state's size, or nil when the next process recovers from the disk.
    func handOver(quiesceTimeout: Double) -> Int? {
        guard let worker = state.withLock({ $0.worker }),
              case .handedOver(let bytes)? = worker.call(.handOver(quiesceTimeout: quiesceTimeout), timeout: quiesceTimeout + 10),
              let bytes else { return nil }
        guard FdStore.keep(stateFile: stateOut, mountpoint: settings.mountpoint) else {
            log.warning("the fd store refused the state: the next process recovers from the disk")
            return nil
        }
        return bytes
    }
}
