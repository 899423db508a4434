import BentoConfig
import BentoControl
import BentoFUSE
import BentoHost
import BentoServices
import BentoSystemd
import BentoWorker
import Glibc
import Logging
import Synchronization

/// The daemon's life: start every mount (or take it over from systemd's fd
/// store after a restart or crash), each served by a worker process of its
/// own, answer bentoctl until a signal, then either unmount and flush
/// everything (stop) or hand every mount to the next process (restart).
/// Docs/systemd.md tells the whole story.
public final class Supervisor: @unchecked Sendable {
    public struct Options {
        public var controlSocket: String
        public var stateDirectory: String
        /// Seconds an upgrade or a restart waits for in-flight requests.
        public var quiesceTimeout: Double
        /// The daemon ends once its last mount is unmounted (the one mount
        /// of the command line); otherwise it waits for `mount -t xv6`.
        public var exitWhenUnmounted: Bool
        public init(controlSocket: String, stateDirectory: String, quiesceTimeout: Double, exitWhenUnmounted: Bool = false) {
            self.controlSocket = controlSocket
            self.stateDirectory = stateDirectory
            self.quiesceTimeout = quiesceTimeout
            self.exitWhenUnmounted = exitWhenUnmounted
        }
    }

    let log: Logger
    let options: Options
    /// The mounts to serve, as the config says now (read again on reload).
    private let configuredMounts: () throws -> [MountSettings]
    private var mounts: [MountSupervisor] {
        get { served.withLock { $0 } }
        set { served.withLock { $0 = newValue } }
    }
    private let served = Guarded<[MountSupervisor]>([])
    private let stopping = Atomic<Bool>(false)
    private var store: StateStore?
    private let done = Semaphore()
    /// Signalled once the first mounts are up (control requests wait for it).
    private let ready = Semaphore()
    /// One reload or mount request at a time.
    private let changing = PthreadMutex()

    public init(log: Logger, options: Options, mounts: @escaping () throws -> [MountSettings]) {
        self.log = log
        self.options = options
        self.configuredMounts = mounts
    }

    public func run() throws {
        // Signals go to one thread that waits for them; block them everywhere first.
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        do {
            store = try StateStore(directory: options.stateDirectory) { [log] in log.error("\($0)") }
        } catch {
            log.error("state directory \(options.stateDirectory): \(error); upgrades and rollbacks will not be remembered")
        }
        // The control socket first: a second daemon stops here, before it
        // touches any mount.
        let control = try ControlServer(path: options.controlSocket, log: { [log] in log.info("\($0)") }) { [self] request in
            ready.wait()
            ready.signal()
            return answer(request)
        }
        defer { control.stop() }

        // What a previous process of this service left in the fd store.
        var stored = FdStore.collect()
        let settings = try configuredMounts()
        for setting in settings {
            _ = try? start(setting, stored: stored.removeValue(forKey: setting.mountpoint))
        }
        // Mounts added by `mount -t xv6` last as long as their kernel
        // mount: taken over from the fd store after a restart or a crash,
        // forgotten when it is gone (a stop unmounted it, or a reboot).
        var wanted = settings.count
        for setting in store?.addedMounts() ?? [] where !settings.contains(where: { $0.mountpoint == setting.mountpoint }) {
            guard let found = stored.removeValue(forKey: setting.mountpoint) else {
                store?.update(setting.mountpoint) { $0 = nil }
                continue
            }
            wanted += 1
            _ = try? start(setting, stored: found, added: true)
        }
        for (mountpoint, leftover) in stored { release(mountpoint, leftover) }
        guard !mounts.isEmpty || wanted == 0 && !options.exitWhenUnmounted else {
            throw MountSupervisor.Failure("no mount could be served")
        }
        ready.signal()
        ServiceManager.ready(status: statusLine())
        startWatchdog()

        let waitFor = signals
        Thread.start { [self] in
            while true {
                var set = waitFor
                var received: Int32 = 0
                sigwait(&set, &received)
                if received == SIGHUP { _ = reload(); continue }
                stopOrHandOver(signal: received)
            }
        }
        done.wait()
        log.info("stopped")
    }

    /// Starts one mount and lists it, taking it over from `stored` when the
    /// previous process left it there; `added` when `mount -t xv6` asked
    /// for it rather than the config. Throws (and logs) if it cannot start.
    private func start(_ setting: MountSettings, stored: FdStore.Stored?, added: Bool = false) throws -> MountSupervisor {
        let asked = setting
        var setting = setting
        let configured = setting.module
        var stored = stored
        if let found = stored, let why = found.damage ?? (found.image == nil ? "its session record is missing"
            : found.image != setting.image ? "it served another image (\(found.image!))" : nil) {
            log.warning("\(setting.mountpoint): not taking over the previous mount: \(why)", metadata: ["mount": "\(setting.mountpoint)"])
            release(setting.mountpoint, found)
            stored = nil
        }
        setting.module = moduleToServe(setting)
        let mount: MountSupervisor
        do {
            mount = try MountSupervisor(setting, log: log, stored: stored)
        } catch {
            log.error("\(setting.mountpoint): not mounted: \(error)", metadata: ["mount": "\(setting.mountpoint)"])
            if let stored { release(setting.mountpoint, stored) }
            throw error
        }
        mount.added = added
        mount.onFinish = { [self, unowned mount] in mountFinished(mount) }
        mount.onAutoRollback = { [self, unowned mount] report, failed in autoRolledBack(mount, report, failedModule: failed) }
        store?.update(setting.mountpoint) { record in
            record = StateStore.MountRecord(module: mount.module, configModule: configured, previous: record?.previous,
                                            upgradingFrom: nil, failedModules: record?.failedModules,
                                            added: added ? asked : nil)
        }
        // Listed (and recorded) before it serves: an umount right after
        // the kernel's INIT must find it (mountFinished).
        mounts.append(mount)
        do {
            try mount.start()
        } catch {
            // The mount is gone already: unmounted and out of the fd store.
            mounts.removeAll { $0 === mount }
            if added { store?.update(setting.mountpoint) { $0 = nil } }
            log.error("\(setting.mountpoint): not mounted: \(error)", metadata: ["mount": "\(setting.mountpoint)"])
            throw error
        }
        return mount
    }

    /// A mount the previous process served that this one will not: unmount
    /// it, and drop it from the fd store.
    private func release(_ mountpoint: String, _ stored: FdStore.Stored) {
        log.info("\(mountpoint): no longer configured (or not taken over): unmounting it", metadata: ["mount": "\(mountpoint)"])
        FuseMount.unmount(mountpoint)
        for fd in [stored.fuse, stored.journal, stored.state, stored.imageFile].compactMap({ $0 }) { close(fd) }
        FdStore.forget(mountpoint: mountpoint)
    }

    /// The module a mount starts with: the one an earlier upgrade left it
    /// on, unless that upgrade never finished (then the one before it) or
    /// the config has named another module since.
    private func moduleToServe(_ setting: MountSettings) -> String {
        guard let record = store?.record(setting.mountpoint), record.configModule == setting.module else {
            return setting.module
        }
        if let from = record.upgradingFrom {
            log.event(.upgradeInterrupted, level: .warning,
                      "\(setting.mountpoint): an upgrade from \(from) was interrupted; serving \(from)",
                      ["mount": setting.mountpoint, "module": from, "interrupted_module": record.module])
            return from
        }
        if record.module != setting.module {
            log.info("\(setting.mountpoint): serving \(record.module), as upgraded before (the config names \(setting.module))",
                     metadata: ["mount": "\(setting.mountpoint)"])
        }
        return record.module
    }

    /// A mount's loop ended, flushed. Still listed, it was unmounted from
    /// outside (umount): it is no longer served, and one that `mount -t
    /// xv6` added is forgotten; a config mount comes back at the next
    /// reload or start. (A stop or a reload ends the daemon or unlists
    /// the mount itself.)
    private func mountFinished(_ mount: MountSupervisor) {
        guard !stopping.load(ordering: .acquiring) else { return }
        let listed = served.withLock { list in
            guard let index = list.firstIndex(where: { $0 === mount }) else { return false }
            list.remove(at: index)
            return true
        }
        guard listed else { return }
        let mountpoint = mount.settings.mountpoint
        if mount.added { store?.update(mountpoint) { $0 = nil } }
        let comesBack = mount.added || options.exitWhenUnmounted ? "" : "; as a config mount, it is served again at the next reload or start"
        log.info("\(mountpoint): unmounted (umount): no longer served\(comesBack)", metadata: ["mount": "\(mountpoint)"])
        ServiceManager.status(statusLine())
        if options.exitWhenUnmounted && mounts.isEmpty { done.signal() }
    }

    /// `mount -t xv6` (the control request `mount`): serve one more mount,
    /// as long as the kernel's mount lasts (not written to the config).
    private func addMount(_ request: ControlRequest) -> ControlReply {
        guard let image = request.image, let mountpoint = request.mountpoint, let module = request.module else {
            return .failure("mount needs \"image\", \"mountpoint\" and \"module\"")
        }
        if let relative = [image, mountpoint, module].first(where: { !$0.hasPrefix("/") }) {
            return .failure("\(relative): not an absolute path")
        }
        let writebackCache = request.writebackCache ?? false
        let setting = MountSettings(image: image, mountpoint: mountpoint, module: module,
                                    threads: request.threads ?? MountConfiguration.defaultThreads(writebackCache: writebackCache),
                                    cacheMiB: request.cacheMiB ?? MountConfiguration.defaultCacheMiB,
                                    allowOther: request.allowOther ?? false, writebackCache: writebackCache,
                                    readOnly: request.readOnly ?? false)
        guard MountConfiguration.threadsRange.contains(setting.threads) else {
            return .failure("threads=\(setting.threads): from \(MountConfiguration.threadsRange.lowerBound) to \(MountConfiguration.threadsRange.upperBound)")
        }
        guard MountConfiguration.cacheMiBRange.contains(setting.cacheMiB) else {
            return .failure("cache_mib=\(setting.cacheMiB): from \(MountConfiguration.cacheMiBRange.lowerBound) to \(MountConfiguration.cacheMiBRange.upperBound)")
        }
        if let other = sharing(setting) { return .failure(other) }
        let mount: MountSupervisor
        do { mount = try start(setting, stored: nil, added: true) } catch {
            return .failure("\(mountpoint): not mounted: \(error)")
        }
        log.info("\(mountpoint): serving \(image), added by mount", metadata: ["mount": "\(mountpoint)"])
        ServiceManager.status(statusLine())
        return .status([mount.status])
    }

    /// Why `setting` cannot be served beside the mounts served now (the
    /// same mountpoint or image), or nil. A mount just unmounted may
    /// still be flushing: it is waited for (a quick umount and mount again).
    private func sharing(_ setting: MountSettings) -> String? {
        let image = Self.resolved(setting.image)
        func clash() -> MountSupervisor? {
            mounts.first { !$0.hasEnded && ($0.settings.mountpoint == setting.mountpoint || Self.resolved($0.settings.image) == image) }
        }
        for _ in 0..<600 {
            guard let other = clash() else { return nil }
            if FuseMount.isFuseMount(other.settings.mountpoint) {
                return other.settings.mountpoint == setting.mountpoint ? "\(setting.mountpoint) is served already (\(other.settings.image))"
                    : "\(setting.image) is served already, at \(other.settings.mountpoint)"
            }
            usleep(100_000)
        }
        return "\(clash()?.settings.mountpoint ?? setting.mountpoint) is still being unmounted"
    }

    /// SIGTERM: systemd sends it for `stop` and for `restart` alike; the job
    /// it runs on our unit tells which. Not under systemd, it is a stop.
    private func stopOrHandOver(signal: Int32) {
        let job = signal == SIGTERM ? ServiceManager.currentJobType() : nil
        if job == "restart" || job == "try-restart" {
            ServiceManager.stopping(status: "restarting: handing \(mounts.count) mount(s) to the next process")
            for mount in mounts {
                let bytes = mount.handOver(quiesceTimeout: max(options.quiesceTimeout, 5))
                log.event(.handedOver, "\(mount.settings.mountpoint): left to the next process "
                          + (bytes.map { "with \($0) bytes of state" } ?? "to recover from the disk"),
                          ["mount": mount.settings.mountpoint, "state_bytes": "\(bytes ?? 0)", "module": mount.module])
            }
            // Not unmounted, not flushed again: the next process takes over.
            // _exit: the workers die with us (PDEATHSIG), their requests
            // still waiting at the gates; the kernel resends them.
            _exit(0)
        }
        stopping.store(true, ordering: .releasing)
        log.info("signal \(signal)\(job.map { " (systemd job: \($0))" } ?? ""): unmounting everything")
        ServiceManager.stopping(status: "stopping: flushing and unmounting \(mounts.count) mount(s)")
        for mount in mounts { mount.stop() }
        done.signal()
    }

    /// `systemctl reload` (bentoctl reload, or SIGHUP): new mounts start,
    /// removed ones stop, unchanged ones are not touched. A mount whose
    /// settings changed is restarted.
    func reload() -> ControlReply {
        changing.withLock { reloadLocked() }
    }

    private func reloadLocked() -> ControlReply {
        ServiceManager.reloading(status: "reloading the config")
        defer { ServiceManager.ready(status: statusLine()) }
        var report = ReloadReport()
        let wanted: [MountSettings]
        do { wanted = try configuredMounts() } catch {
            log.error("reload: \(error); nothing changed")
            return ControlReply(ok: false, error: "\(error); nothing changed", reload: report)
        }
        // Mounts added by mount -t xv6 are not the config's to change.
        let plan = ReloadPlan(serving: mounts.filter { !$0.added }.map(\.settings), wanted: wanted)
        report.unchanged = plan.unchanged
        for mountpoint in plan.stop {
            guard let mount = mounts.first(where: { !$0.added && $0.settings.mountpoint == mountpoint }) else { continue }
            mounts.removeAll { $0 === mount }
            mount.stop()
            report.stopped.append(mountpoint)
        }
        for setting in plan.start {
            if (try? start(setting, stored: nil)) != nil {
                report.started.append(setting.mountpoint)
            } else {
                report.failed.append("\(setting.mountpoint): not mounted (see the journal)")
            }
        }
        log.event(.reloaded, "reloaded the config: \(report.started.count) started, \(report.stopped.count) stopped, "
                  + "\(report.unchanged.count) unchanged, \(report.failed.count) failed",
                  ["started": report.started.joined(separator: " "), "stopped": report.stopped.joined(separator: " "),
                   "failed": report.failed.joined(separator: "; ")])
        return ControlReply(ok: report.failed.isEmpty, error: report.failed.isEmpty ? nil : report.failed.joined(separator: "; "),
                            reload: report)
    }

    /// What `systemctl status` shows.
    private func statusLine() -> String {
        let serving = mounts.map(\.status).filter { $0.state == .serving }
        let list = serving.map { "\($0.mountpoint) (\($0.module.name) \($0.module.version))" }
        return "serving \(serving.count) mount\(serving.count == 1 ? "" : "s"): " + list.joined(separator: ", ")
    }

    /// WATCHDOG=1 while the supervisor itself works: a ping needs the
    /// mount list, which a deadlocked supervisor would hold. A request that
    /// hangs in a module is the mount's business, not the unit's: its
    /// worker is killed at the hang limit (MountSupervisor.watchForHangs).
    private func startWatchdog() {
        guard let interval = ServiceManager.watchdogInterval else { return }
        Thread.start { [self] in
            while true {
                usleep(UInt32(interval / 4 * 1e6))
                _ = mounts.count
                ServiceManager.watchdog()
            }
        }
    }

    // MARK: Control requests

    private func answer(_ request: ControlRequest) -> ControlReply {
        switch request.command {
        case .status:
            return .status(mounts.map(\.status))
        case .history:
            return ControlReply(ok: true, history: store?.history(mountpoint: request.mountpoint) ?? [])
        case .reload:
            return reload()
        case .mount:
            return changing.withLock { addMount(request) }
        case .upgrade, .rollback:
            guard let mountpoint = request.mountpoint, let mount = mounts.first(where: { $0.settings.mountpoint == mountpoint }) else {
                return .failure("no mount at \(request.mountpoint ?? "(none given)")")
            }
            let rollback = request.command == .rollback
            guard let target = rollback ? store?.record(mountpoint)?.previous : request.module else {
                return .failure(rollback ? "\(mountpoint) has not been upgraded: nothing to roll back to" : "no module file given")
            }
            if !rollback, let refusal = failedBefore(target, mountpoint: mountpoint, force: request.force ?? false) {
                let report = UpgradeReport(result: UpgradeReport.refused, action: .upgrade, mountpoint: mountpoint,
                                           module: target, error: refusal, time: MountSupervisor.timestamp())
                journal(report)
                return ControlReply(ok: false, error: refusal, upgrade: report)
            }
            ServiceManager.status("\(rollback ? "rolling back" : "upgrading") \(mountpoint)")
            let old = mount.module
            var report = mount.upgrade(to: target, action: rollback ? .rollback : .upgrade,
                                       quiesceTimeout: options.quiesceTimeout) { [store] from in
                store?.update(mountpoint) { $0?.upgradingFrom = from }
            }
            // Taken before the probation starts: its health gate may roll
            // the version back at once, before --wait looks.
            let upgradedTo = mount.module
            if mount.module != old {
                store?.update(mountpoint) { record in
                    record?.module = mount.module
                    record?.previous = old
                }
            }
            if !rollback && report.result == UpgradeReport.upgraded {
                mount.beginProbation(previous: old, previousVersion: report.fromVersion ?? "?", module: mount.module,
                                     version: report.toVersion ?? "?",
                                     seconds: request.probationSeconds ?? mount.settings.probationSeconds)
            }
            ServiceManager.status(statusLine())
            store?.appendHistory(report)
            journal(report)
            if request.wait == true && report.result == UpgradeReport.upgraded {
                report = waitOutProbation(of: mount, upgradedTo: upgradedTo, upgraded: report)
            }
            let ok = report.result == (rollback ? UpgradeReport.rolledBack : UpgradeReport.upgraded)
            return ControlReply(ok: ok, error: report.error, upgrade: report)
        }
    }

    /// Why `target` is refused: it failed on probation on this mount before
    /// (unless forced, which clears the mark).
    private func failedBefore(_ target: String, mountpoint: String, force: Bool) -> String? {
        let key = Self.resolved(target)
        guard let why = store?.record(mountpoint)?.failedModules?[key] else { return nil }
        if force {
            store?.update(mountpoint) { $0?.failedModules?[key] = nil }
            log.warning("\(mountpoint): \(target) failed on probation before (\(why)); trying it again, as forced")
            return nil
        }
        return "\(target) failed on probation on \(mountpoint) (\(why)); refused until forced (bentoctl upgrade --force)"
    }

    static func resolved(_ path: String) -> String {
        guard let real = realpath(path, nil) else { return path }
        defer { free(real) }
        return String(cString: real)
    }

    /// `upgrade --wait`: the answer once the probation is over: upgraded,
    /// or rolled back automatically and why.
    private func waitOutProbation(of mount: MountSupervisor, upgradedTo module: String, upgraded: UpgradeReport) -> UpgradeReport {
        let rollback = mount.probationOutcome(of: module)
        guard rollback != nil || mount.module != module else { return upgraded }
        var report = upgraded
        report.result = UpgradeReport.rolledBack
        report.error = rollback?.error ?? "rolled back during its probation"
        return report
    }

    /// A fault of a version on probation put the one before back: the
    /// record, the history, and the mark that refuses the failed file.
    private func autoRolledBack(_ mount: MountSupervisor, _ report: UpgradeReport, failedModule: String) {
        let mountpoint = mount.settings.mountpoint
        store?.update(mountpoint) { record in
            record?.module = mount.module
            record?.previous = nil
            var failed = record?.failedModules ?? [:]
            // Of a stack, the module that changed: what an upgrade names.
            let serving = Set(ModuleStack.paths(of: mount.module))
            for path in ModuleStack.paths(of: failedModule) where !serving.contains(path) {
                failed[Self.resolved(path)] = report.error ?? "failed on probation"
            }
            record?.failedModules = failed
        }
        store?.appendHistory(report)
        ServiceManager.status(statusLine())
    }

    /// An upgrade or rollback's outcome in the journal, with every phase's time.
    private func journal(_ report: UpgradeReport) {
        let mountpoint = report.mountpoint ?? ""
        var fields = ["mount": mountpoint, "from_version": report.fromVersion ?? "", "to_version": report.toVersion ?? "",
                      "module": report.module ?? "", "action": (report.action ?? .upgrade).rawValue]
        for phase in report.phases ?? [] { fields["\(phase.phase.rawValue)_us"] = "\(phase.micros)" }
        if let pause = report.pauseMicros { fields["pause_us"] = "\(pause)" }
        if let bytes = report.stateBytes { fields["state_bytes"] = "\(bytes)" }
        if let format = report.stateFormat { fields["state_format"] = format }
        if let inodes = report.heldInodes { fields["held_inodes"] = "\(inodes)" }
        if let handles = report.heldHandles { fields["held_handles"] = "\(handles)" }
        if let copied = report.tableCopied { fields["table_copied"] = "\(copied)" }
        if let error = report.error { fields["error"] = error }
        let versions = "\(report.fromVersion ?? "?") to \(report.toVersion ?? "?")"
        switch (report.action, report.result) {
        case (.rollback?, UpgradeReport.rolledBack):
            log.event(.rolledBack, "\(mountpoint) rolled back from \(versions), paused \(report.pauseMicros ?? 0) µs", fields)
        case (_, UpgradeReport.upgraded):
            log.event(.upgraded, "\(mountpoint) upgraded live from \(versions), paused \(report.pauseMicros ?? 0) µs, "
                      + "\(report.stateBytes ?? 0) bytes of state", fields)
        case (_, UpgradeReport.rolledBack):
            log.event(.upgradeRolledBack, level: .warning, "\(mountpoint): upgrade from \(versions) failed and was rolled back: "
                      + (report.error ?? ""), fields)
        default:
            log.event(.upgradeRefused, level: .warning, "\(mountpoint): \((report.action ?? .upgrade).rawValue) refused: \(report.error ?? "")", fields)
        }
    }
}
