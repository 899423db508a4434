import BentoControl
import BentoFUSE
import BentoHost
import BentoServices
import BentoSystemd
import BentoWorker
import Glibc
import Logging

/// One mount, supervised: the supervisor mounts it and keeps its long-lived
/// descriptors (the /dev/fuse session, the image, the operation journal);
/// a worker process runs the module on them. A worker that dies is
/// replaced by one that adopts the same session and recovers from the disk
/// and the journal: applications see a stall, not an error, and the other
/// mounts see nothing at all.
final class MountSupervisor: @unchecked Sendable {
    let settings: MountSettings
    let log: Logger
    /// The module file the worker serves, or the spec of its stack
    /// (ModuleStack); changed by upgrades.
    var module: String {
        get { state.withLock { $0.module } }
        set { state.withLock { $0.module = newValue } }
    }
    private let fuse: Int32
    /// The image, open and locked (ImageLock) for as long as it is served.
    private let image: Int32
    /// The image fd came from the fd store, where it stays.
    private let imageInStore: Bool
    private let journal: Int32
    /// Which request each worker thread runs: outlives the worker.
    private let recorder: FlightRecorder
    private let stateOut: Int32
    private let stateIn: Int32?
    /// The journal had to be made anew: the fd store must get it.
    private let journalReplaced: Bool
    private let fileSystemType: String
    private let state: Guarded<State>
    /// Signalled once the mount has ended (or could not start).
    private let finished = Semaphore()
    /// Signalled when the first worker serves, or could not.
    private let firstStart = Semaphore()
    private let upgradeRunning = Guarded<Bool>(false)
    /// `mount -t xv6` asked for this mount, not the config.
    var added = false
    /// Called once the mount has ended after serving.
    var onFinish: (@Sendable () -> Void)?
    /// Called when a version on probation failed and the mount goes back
    /// to the version before (with the report for the history).
    var onAutoRollback: (@Sendable (UpgradeReport, _ failedModule: String) -> Void)?

    private struct State {
        var module: String
        var origin: WorkerStart.Origin
        var worker: WorkerProcess?
        var initRequest: [UInt8]?
        var writebackCache: Bool?
        var stopping = false
        var ended = false
        var firstFailure: String?
        /// Requests that faulted or hung a worker: answered EIO if resent.
        var quarantine: Set<UInt64> = []
        /// Requests in flight when the last worker died.
        var inFlightAtLastDeath: Set<UInt64> = []
        /// The worker was killed by us for a hung request.
        var killedForHang = false
        var probation: Probation?
        /// An auto-rollback is under way: the probation has ended, its
        /// outcome not yet known to `probationOutcome`.
        var rollingBack = false
        /// The last probation's auto-rollback, once done (cleared when a
        /// probation begins).
        var autoRollback: UpgradeReport?
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
        do { fileSystemType = try ModuleStack.load(spec: settings.module).bottom.descriptor.fileSystem } catch {
            throw Failure("\(error)")
        }
        imageInStore = stored?.imageFile != nil
        image = try Self.openImage(settings.image, readOnly: settings.readOnly, stored: stored?.imageFile, log: log)
        guard let recorder = FlightRecorder(fd: FlightRecorder.create()) else {
            if !imageInStore { close(image) }  // else the caller closes what it was given
            throw Failure("flight recorder: \(String(cString: strerror(errno)))")
        }
        self.recorder = recorder
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
                fuse = try FuseMount.mount(at: settings.mountpoint, source: settings.image,
                                           type: FuseMount.subtype(of: fileSystemType), allowOther: settings.allowOther,
                                           readOnly: settings.readOnly)
            } catch {
                // A stored image fd is the caller's to close (release).
                for fd in [journal, recorder.fd, stateOut] + (imageInStore ? [] : [image]) { close(fd) }
                throw Failure("\(error)")
            }
        }
        state = Guarded(State(module: settings.module, origin: origin, initRequest: stored?.initRequest,
                            writebackCache: stored?.writebackCache))
    }

    /// The image, open and locked: the fd a previous process of the service
    /// left in the fd store (its lock came with it), else opened now.
    /// Throws if another program holds the image: another daemon serves
    /// it, or mkfs.xv6 or fsck.xv6 is changing it. Read-only: opened
    /// read-only (it may sit on read-only storage) under a shared lock.
    private static func openImage(_ path: String, readOnly: Bool, stored: Int32?, log: Logger) throws -> Int32 {
        let fd = stored ?? open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else { throw Failure("cannot open \(path): \(String(cString: strerror(errno)))") }
        var outcome = ImageLock.lock(fd, shared: readOnly)
        // An fd of a previous process that the fd store is dropping may
        // hold it a moment longer: systemd handles FDSTOREREMOVE later.
        for _ in 0..<10 where outcome == .heldElsewhere {
            usleep(100_000)
            outcome = ImageLock.lock(fd, shared: readOnly)
        }
        switch outcome {
        case .locked:
            return fd
        case .heldElsewhere:
            close(fd)
            throw Failure("\(path) is in use: another program holds its lock (another bento-upgraded serves it, "
                          + "or mkfs.xv6 or fsck.xv6 is changing it)")
        case .failed(let error):
            // Serving matters more than the guard: say so and go on.
            log.warning("cannot lock \(path): \(String(cString: strerror(error))); other programs are not kept from changing it")
            return fd
        }
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
        Thread.start { [self] in watchForHangs() }
        Thread.start { [self] in watchHealth() }
        firstStart.wait()
        if let failure = state.withLock({ $0.firstFailure }) { throw Failure(failure) }
    }

    /// The supervising thread: starts a worker, waits for it, and starts
    /// the next one when it dies, until the mount ends.
    private func supervise() {
        var quickDeaths = 0
        var first = true
        /// A worker died and no later one has flushed what it answered.
        var unflushed = false
        while true {
            if state.withLock({ $0.stopping }) {
                // Unmounted while between workers: recover and flush anyway.
                if unflushed { flushAfterDeath() }
                end()
                return
            }
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
            let served = RequestStats.now()
            let exit = worker.wait()
            let stopping = state.withLock { s -> Bool in
                s.worker = nil
                return s.stopping
            }
            if stopping || exit == .exited(0) {
                if exit != .exited(0) {
                    log.error("the worker of \(settings.mountpoint) ended with \(describe(exit)) while stopping; flushing what it answered")
                    flushAfterDeath()
                }
                end()
                return
            }
            // Died: the next worker adopts the session and recovers, on
            // the version before if this one faulted on probation.
            afterDeath(of: worker, exit: exit)
            unflushed = true
            // Workers that keep dying within a second of serving get a
            // growing pause: never a busy loop, whatever the module does.
            // One that served a while is replaced at once.
            quickDeaths = RequestStats.now() - served < 1 ? quickDeaths + 1 : 0
            if quickDeaths >= 3 { usleep(UInt32(min(5.0, 0.1 * Double(1 << min(quickDeaths - 3, 6))) * 1e6)) }
        }
    }

    /// A worker died while the mount was going away: one more, without a
    /// session, recovers the image from the disk and the operation journal
    /// and commits it, so that no answered operation is lost.
    private func flushAfterDeath() {
        state.withLock { $0.origin = .flush }
        guard let worker = try? spawnWorker() else { log.error("\(settings.mountpoint): could not start a worker to flush"); return }
        if case .failed(let why)? = worker.firstReply(timeout: 120) { log.error("\(settings.mountpoint): flush after the worker's death failed: \(why)") }
        let exit = worker.wait()
        if exit != .exited(0) { log.error("\(settings.mountpoint): the flushing worker ended with \(describe(exit))") }
    }

    /// A worker on the mount's descriptors, with what the mount is now.
    private func spawnWorker() throws -> WorkerProcess {
        try state.withLock { s in
            let start = WorkerStart(settings: settingsServing(s.module), origin: s.origin, initRequest: s.initRequest,
                                    writebackCache: s.writebackCache, quarantine: Array(s.quarantine))
            let descriptors = WorkerProcess.Descriptors(fuse: fuse, image: image, journal: journal, recorder: recorder.fd,
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
            if !FdStore.keep(mountpoint: settings.mountpoint, fuse: fuse, journal: journal, image: settings.image,
                             imageFile: imageInStore ? nil : image, negotiated: negotiated) {
                log.warning("\(settings.mountpoint) could not be put in the fd store: a restart will remount it")
            }
        } else {
            FdStore.forget(mountpoint: settings.mountpoint, kinds: [.state])
            if journalReplaced && !FdStore.replace(journal: journal, mountpoint: settings.mountpoint) {
                log.warning("\(settings.mountpoint): the new operation journal could not be put in the fd store")
            }
            if !imageInStore && !FdStore.keep(imageFile: image, mountpoint: settings.mountpoint) {
                log.warning("\(settings.mountpoint): the image could not be put in the fd store: its lock ends with this process")
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
        for fd in [fuse, image, journal, recorder.fd, stateOut] + [stateIn].compactMap({ $0 }) { close(fd) }
        finished.signal()
        if served { onFinish?() } else { firstStart.signal() }
    }

    /// Reads the flight recorder, judges the death (Containment), and
    /// sets up the next worker: quarantined requests, and the module.
    private func afterDeath(of worker: WorkerProcess, exit: WorkerProcess.Exit) {
        let inFlight = recorder.inFlight
        let now = RequestStats.now()
        let (verdict, probation, failed) = state.withLock { s -> (DeathVerdict, Probation?, String) in
            let onProbation = s.probation?.isActive(at: now) ?? false
            let verdict = Containment.verdict(exit: exit, killedForHang: s.killedForHang, inFlight: inFlight,
                                              inFlightAtPreviousDeath: s.inFlightAtLastDeath, onProbation: onProbation)
            let failed = s.module
            s.quarantine.formUnion(verdict.culprits.map(\.unique))
            s.inFlightAtLastDeath = Set(inFlight.map(\.unique))
            s.killedForHang = false
            s.origin = .recovered
            let probation = onProbation ? s.probation : nil
            if verdict.rollBack, let probation {
                s.module = probation.previous
                s.probation = nil
                s.rollingBack = true
            }
            return (verdict, probation, failed)
        }
        recorder.clear()
        log.event(.workerDied, level: .error, "the worker of \(settings.mountpoint) (pid \(worker.pid)) died: \(verdict.cause); "
                  + "starting another, which recovers from the disk and the operation journal",
                  ["worker_pid": "\(worker.pid)", "cause": verdict.cause, "fault": "\(verdict.fault)",
                   "in_flight": "\(inFlight.count)", "module": failed])
        for culprit in verdict.culprits {
            log.event(.quarantined, level: .error, "\(settings.mountpoint): \(culprit.description) "
                      + (culprit.fault == 0 ? "was in flight at two worker deaths in a row" :
                         culprit.fault == FlightRecorder.hang ? "ran past the hang limit" :
                         "faulted (\(Containment.signalName(culprit.fault)))")
                      + " under \(probation?.version ?? failed): quarantined, answered EIO if resent",
                      ["operation": FuseOpcode.name(culprit.opcode), "node": "\(culprit.node)", "name": culprit.name ?? "",
                       "request": "\(culprit.unique)", "module": failed, "cause": verdict.cause])
        }
        if verdict.rollBack, let probation {
            log.event(.autoRollback, level: .error, "\(settings.mountpoint): \(probation.version) failed on probation "
                      + "(\(verdict.cause)); rolled back to \(probation.previousVersion)",
                      ["from_module": probation.module, "to_module": probation.previous, "cause": verdict.cause,
                       "from_version": probation.version, "to_version": probation.previousVersion])
            let report = UpgradeReport(result: UpgradeReport.rolledBack, action: .autoRollback, mountpoint: settings.mountpoint,
                                       module: probation.previous, fromVersion: probation.version,
                                       toVersion: probation.previousVersion, error: "\(probation.version) failed on probation: \(verdict.cause)",
                                       time: Self.timestamp())
            finishAutoRollback(report, failedModule: probation.module)
        }
    }

    /// The history first, then the outcome `--wait` returns.
    private func finishAutoRollback(_ report: UpgradeReport, failedModule: String) {
        onAutoRollback?(report, failedModule)
        state.withLock { s in
            s.autoRollback = report
            s.rollingBack = false
        }
    }

    /// Waits until the probation of `module` has ended, and its rollback
    /// if any: nil when the version stayed, or the auto-rollback's report.
    func probationOutcome(of module: String) -> UpgradeReport? {
        while !hasEnded {
            let now = RequestStats.now()
            let (busy, rollback) = state.withLock { s in
                ((s.probation.map { $0.module == module && $0.isActive(at: now) } ?? false) || s.rollingBack, s.autoRollback)
            }
            if !busy { return rollback }
            usleep(100_000)
        }
        return nil
    }

    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(cString: buffer)
    }

    /// Kills the worker when a request runs past the hang limit, its slot
    /// marked: the death is then judged a fault of that request.
    private func watchForHangs() {
        let limit = settings.hangLimitSeconds
        let interval = UInt32(min(0.5, max(limit / 4, 0.05)) * 1e6)
        while !hasEnded {
            usleep(interval)
            guard let worker = state.withLock({ $0.killedForHang ? nil : $0.worker }) else { continue }
            let hung = Containment.hung(recorder.inFlight, now: RequestStats.nanoseconds(), limit: limit)
            guard !hung.isEmpty else { continue }
            for entry in hung { recorder.mark(slot: entry.slot, fault: FlightRecorder.hang) }
            state.withLock { $0.killedForHang = true }
            log.event(.stuck, level: .error, "\(settings.mountpoint): \(hung[0].description) has run for more than "
                      + "\(limit) s: killing the worker (pid \(worker.pid)), as for a fault",
                      ["in_flight": "\(hung.count)", "worker_pid": "\(worker.pid)", "request": hung[0].description])
            kill(worker.pid, SIGKILL)
        }
    }

    /// After an upgrade to `module`: a fault, a hang or a failed health
    /// check within the probation sends the mount back to `previous`.
    func beginProbation(previous: String, previousVersion: String, module: String, version: String, seconds: Double) {
        guard seconds > 0 else { return }
        let now = RequestStats.now()
        var probation = Probation(previous: previous, previousVersion: previousVersion, module: module,
                                  version: version, startedAt: now, until: now + seconds)
        if let (start, earlier) = healthNow() {
            probation.start = start
            probation.before = start.since(earlier ?? HealthSample(answered: start.answered.map { _ in 0 },
                                                                   faults: start.faults.map { _ in 0 },
                                                                   buckets: start.buckets.map { _ in 0 }))
        }
        state.withLock { s in
            s.probation = probation
            s.autoRollback = nil
        }
    }

    /// Health samples of the worker serving now: (time, pid, counters),
    /// the last two minutes' worth.
    private let healthSamples = Guarded<[(Double, pid_t, HealthSample)]>([])

    /// The worker's counters now, and those of a minute before (if the same
    /// worker was sampled then): the old version's recent window.
    private func healthNow() -> (HealthSample, HealthSample?)? {
        guard let worker = state.withLock({ $0.worker }), case .health(let now)? = worker.call(.health, timeout: 1) else {
            return nil
        }
        let t = RequestStats.now()
        let earlier = healthSamples.withLock { samples in
            samples.first { $0.1 == worker.pid && t - $0.0 <= 60 }?.2
        }
        return (now, earlier)
    }

    /// Samples the worker every second; during a probation, a regression
    /// past the health gate rolls the version back, live.
    private func watchHealth() {
        let gate = HealthGate(maxFaultRateIncrease: settings.healthMaxFaultRateIncrease, maxP99Factor: settings.healthMaxP99Factor)
        while !hasEnded {
            sleep(1)
            guard let worker = state.withLock({ $0.worker }), case .health(let sample)? = worker.call(.health, timeout: 1) else {
                continue
            }
            let now = RequestStats.now()
            healthSamples.withLock { samples in
                samples = samples.filter { $0.1 == worker.pid && now - $0.0 <= 120 } + [(now, worker.pid, sample)]
            }
            guard let probation = state.withLock({ $0.probation }), probation.isActive(at: now),
                  let start = probation.start, let before = probation.before,
                  let why = gate.regression(before: before, after: sample.since(start), elapsed: now - probation.startedAt)
            else { continue }
            rollBack(probation, because: why)
        }
    }

    /// The health gate's rollback: live, like `bentoctl rollback`; if the
    /// failing version cannot hand its state over, its worker is replaced.
    private func rollBack(_ probation: Probation, because why: String) {
        state.withLock { s in
            s.probation = nil
            s.rollingBack = true
        }
        var report = upgrade(to: probation.previous, action: .rollback, quiesceTimeout: 1) { _ in }
        if report.result != UpgradeReport.rolledBack {
            log.error("\(settings.mountpoint): the live rollback failed (\(report.error ?? "?")); replacing the worker")
            let worker = state.withLock { s -> WorkerProcess? in
                s.module = probation.previous
                return s.worker
            }
            if let worker { kill(worker.pid, SIGKILL) }
            report = UpgradeReport(result: UpgradeReport.rolledBack, action: .rollback, mountpoint: settings.mountpoint,
                                   module: probation.previous)
        }
        report.action = .autoRollback
        report.fromVersion = probation.version
        report.toVersion = probation.previousVersion
        report.error = "\(probation.version) failed on probation: \(why)"
        log.event(.autoRollback, level: .error, "\(settings.mountpoint): \(probation.version) failed on probation "
                  + "(\(why)); rolled back to \(probation.previousVersion)",
                  ["from_module": probation.module, "to_module": probation.previous, "cause": why,
                   "from_version": probation.version, "to_version": probation.previousVersion])
        finishAutoRollback(report, failedModule: probation.module)
    }

    /// The probation now, if any: the version and the seconds left.
    var probation: (version: String, secondsLeft: Double)? {
        let now = RequestStats.now()
        return state.withLock { s in s.probation.flatMap { $0.isActive(at: now) ? ($0.version, $0.secondsLeft(at: now)) : nil } }
    }

    var quarantinedCount: Int { state.withLock { $0.quarantine.count } }

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
            if ended { status.state = .stopped }
            if let probation { status.probation = ProbationStatus(secondsLeft: probation.secondsLeft) }
            let quarantined = quarantinedCount
            status.quarantined = quarantined == 0 ? nil : quarantined
            return status
        }
        return MountStatus(mountpoint: settings.mountpoint, image: settings.image,
                           module: ModuleInfo(name: fileSystemType, version: "?", path: module),
                           state: ended ? .stopped : .restarting, uptimeSeconds: 0, operations: [:], latencyMicros: .zero,
                           readOnly: settings.readOnly ? true : nil)
    }

    /// Upgrades (or rolls back) the worker's module; one at a time.
    /// `marking` hears the module left while the upgrade runs, then nil:
    /// a daemon that dies in between comes back on that module.
    func upgrade(to path: String, action: UpgradeAction, quiesceTimeout: Double,
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
                                 error: "the worker of \(settings.mountpoint) died during the \(action.rawValue); it comes back on \(module)")
        }
        if report.result == UpgradeReport.upgraded || (action == .rollback && report.result == UpgradeReport.rolledBack) {
            // The version on probation, if any, no longer serves: its
            // probation ends here (the caller starts the new one's).
            state.withLock { s in
                s.module = report.module ?? path
                s.probation = nil
            }
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
