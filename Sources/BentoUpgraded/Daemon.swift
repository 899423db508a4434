import BentoControl
import Glibc
import Logging

/// The daemon's life: start every mount, serve (and upgrade) until a signal
/// or until every mount is gone, then unmount and flush everything.
final class Daemon: @unchecked Sendable {
    struct Options {
        var controlSocket: String
        var stateDirectory: String
        /// Seconds an upgrade waits for in-flight requests.
        var quiesceTimeout: Double
    }

    let log: Logger
    let options: Options
    private(set) var mounts: [ServedMount] = []
    private var store: StateStore?
    private let done = Semaphore()
    /// Signalled once `mounts` is complete (control requests wait for it).
    private let ready = Semaphore()
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var running = 0

    init(log: Logger, options: Options) {
        self.log = log
        self.options = options
        pthread_mutex_init(lock, nil)
    }

    func run(mounts settings: [ServedMount.Settings]) throws {
        // Signals go to one thread that waits for them; block them everywhere first.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        do {
            store = try StateStore(directory: options.stateDirectory)
        } catch {
            log.warning("state directory \(options.stateDirectory): \(error); upgrades will not be remembered")
        }
        // The control socket first: a second daemon stops here, before it
        // touches any mount.
        let control = try ControlServer(path: options.controlSocket, log: { [log] in log.info("\($0)") }) { [self] request in
            ready.wait()
            ready.signal()
            return answer(request)
        }
        defer { control.stop() }

        // A mount that cannot start is reported; the others are served.
        for var setting in settings {
            let configured = setting.module
            setting.module = moduleToServe(setting)
            do {
                let mount = try ServedMount(setting, log: log)
                mount.onFinish = { [self] in mountFinished() }
                mounts.append(mount)
                store?.update(setting.mountpoint) { record in
                    record = StateStore.MountRecord(module: mount.loaded.path, configModule: configured,
                                                    previous: record?.previous, upgradingFrom: nil)
                }
            } catch {
                log.error("\(setting.mountpoint): not mounted: \(error)", metadata: ["mount": "\(setting.mountpoint)"])
            }
        }
        guard !mounts.isEmpty else { throw Failure("no mount could be served") }
        running = mounts.count
        for mount in mounts { mount.start() }
        ready.signal()

        let waitFor = signals
        Thread.start { [self] in
            var set = waitFor
            var received: Int32 = 0
            sigwait(&set, &received)
            log.info("signal \(received): unmounting everything")
            done.signal()
        }
        done.wait()
        for mount in mounts { mount.stop() }
        log.info("stopped")
    }

    /// The module a mount starts with: the one an earlier upgrade left it
    /// on, unless that upgrade never finished (then the one before it) or
    /// the config has named another module since.
    private func moduleToServe(_ setting: ServedMount.Settings) -> String {
        guard let record = store?.record(setting.mountpoint), record.configModule == setting.module else {
            return setting.module
        }
        if let from = record.upgradingFrom {
            log.warning("\(setting.mountpoint): an upgrade from \(from) was interrupted; serving \(from)",
                        metadata: ["mount": "\(setting.mountpoint)"])
            return from
        }
        if record.module != setting.module {
            log.info("\(setting.mountpoint): serving \(record.module), as upgraded before (the config names \(setting.module))",
                     metadata: ["mount": "\(setting.mountpoint)"])
        }
        return record.module
    }

    /// A mount's loop ended (stopped, or unmounted from outside).
    private func mountFinished() {
        pthread_mutex_lock(lock)
        running -= 1
        let last = running == 0
        pthread_mutex_unlock(lock)
        if last { done.signal() }
    }

    // MARK: Control requests

    private func answer(_ request: ControlRequest) -> ControlReply {
        switch request.command {
        case .status:
            return .status(mounts.map(\.status))
        case .history:
            return ControlReply(ok: true, history: store?.history(mountpoint: request.mountpoint) ?? [])
        case .upgrade, .rollback:
            guard let mountpoint = request.mountpoint, let mount = mounts.first(where: { $0.settings.mountpoint == mountpoint }) else {
                return .failure("no mount at \(request.mountpoint ?? "(none given)")")
            }
            let rollback = request.command == .rollback
            guard let target = rollback ? store?.record(mountpoint)?.previous : request.module else {
                return .failure(rollback ? "\(mountpoint) has not been upgraded: nothing to roll back to" : "no module file given")
            }
            let report = mount.upgrade(to: target, action: rollback ? "rollback" : "upgrade",
                                       quiesceTimeout: options.quiesceTimeout, store: store)
            store?.appendHistory(report)
            let ok = report.result == (rollback ? UpgradeReport.rolledBack : UpgradeReport.upgraded)
            let summary = "\(rollback ? "rollback" : "upgrade") of \(mountpoint): \(report.result)" + (report.error.map { ": \($0)" } ?? "")
            log.log(level: ok ? .info : .warning, "\(summary)",
                    metadata: ["mount": "\(mountpoint)", "from_version": "\(report.fromVersion ?? "")",
                               "to_version": "\(report.toVersion ?? "")", "pause_us": "\(report.pauseMicros ?? 0)",
                               "state_bytes": "\(report.stateBytes ?? 0)"])
            return ControlReply(ok: ok, error: report.error, upgrade: report)
        }
    }
}
