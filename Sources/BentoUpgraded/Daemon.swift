import BentoControl
import Glibc
import Logging

/// The daemon's life: start every mount, serve until a signal (or until
/// every mount is gone), then unmount and flush everything.
final class Daemon: @unchecked Sendable {
    let log: Logger
    private(set) var mounts: [ServedMount] = []
    private let done = Semaphore()
    /// Signalled once `mounts` is complete (control requests wait for it).
    private let ready = Semaphore()
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var running = 0

    init(log: Logger) {
        self.log = log
        pthread_mutex_init(lock, nil)
    }

    func run(mounts settings: [ServedMount.Settings], controlSocket: String) throws {
        // Signals go to one thread that waits for them; block them everywhere first.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        // The control socket first: a second daemon stops here, before it
        // touches any mount.
        let control = try ControlServer(path: controlSocket, log: { [log] in log.info("\($0)") }) { [self] request in
            guard request.command == .status else { return .notSupportedYet(request.command) }
            ready.wait()
            ready.signal()
            return .status(mounts.map(\.status))
        }
        defer { control.stop() }

        // A mount that cannot start is reported; the others are served.
        for setting in settings {
            do {
                let mount = try ServedMount(setting, log: log)
                mount.onFinish = { [self] in mountFinished() }
                mounts.append(mount)
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

    /// A mount's loop ended (stopped, or unmounted from outside).
    private func mountFinished() {
        pthread_mutex_lock(lock)
        running -= 1
        let last = running == 0
        pthread_mutex_unlock(lock)
        if last { done.signal() }
    }
}
