import BentoControl
import BentoFUSE
import CBentoWorker
import Dispatch
import FoundationEssentials
import Glibc
import Logging

/// Where upgrade phases are logged: off the upgrading thread, in order.
private let phaseLog = DispatchQueue(label: "bento.upgrade-phase-log")

/// The worker process of one mount (`bento-upgraded --worker`, started by
/// the supervisor with the descriptors of WorkerFD): serves the mount until
/// it goes away, and answers the supervisor's requests meanwhile.
public enum Worker {
    public static func run(log: Logger) -> Never {
        // Dies with the supervisor: the mount then waits in the fd store for
        // the next one, and the kernel resends what this process read.
        bento_set_parent_death_signal(SIGKILL)
        if getppid() == 1 { _exit(0) }
        // Ctrl-C and hang-ups are for the supervisor, which stops the mounts.
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        let channel = WorkerChannel(fd: WorkerFD.channel)
        let start: WorkerStart
        do { start = try channel.receive(WorkerStart.self) } catch {
            log.critical("worker: no start message: \(error)")
            _exit(2)
        }
        // Confined before any module code runs (CBentoWorker.h).
        let confined = bento_confine_worker()
        if confined != 0 { log.warning("worker: not confined (seccomp: \(String(cString: strerror(-confined))))") }
        // Which request each thread runs, in the supervisor's memory; a
        // fault marks its own request there before the process dies.
        guard let recorder = FlightRecorder(fd: WorkerFD.recorder) else {
            try? channel.send(WorkerMessage(id: 0, WorkerReply.failed("no flight recorder at fd \(WorkerFD.recorder)")))
            _exit(1)
        }
        recorder.record()
        if start.origin == .flush {
            do {
                try ServedMount.flush(start, log: log)
                try? channel.send(WorkerMessage(id: 0, WorkerReply.started(initRequest: nil, writebackCache: nil, version: "")))
                _exit(0)
            } catch {
                try? channel.send(WorkerMessage(id: 0, WorkerReply.failed("\(error)")))
                _exit(1)
            }
        }
        let mount: ServedMount
        do {
            mount = try ServedMount(start, log: log)
        } catch {
            try? channel.send(WorkerMessage(id: 0, WorkerReply.failed("\(error)")))
            _exit(1)
        }
        mount.announce()
        Thread.start {
            mount.serve()
            // Unmounted and flushed: this worker's job is done.
            _exit(0)
        }
        Thread.start { mount.syncPeriodically() }
        Thread.start { mount.passOnModuleChanges() }
        Thread.start { mount.summarizePressure() }
        // A fresh mount is ready once the kernel's INIT is answered.
        var waited = 0.0
        while mount.server.negotiated == nil && waited < 10 {
            usleep(2_000)
            waited += 0.002
        }
        let agreed = mount.server.negotiated
        try? channel.send(WorkerMessage(id: 0, WorkerReply.started(
            initRequest: agreed?.initRequest, writebackCache: agreed?.writebackCache,
            version: mount.stack.name)))
        while true {
            let message: WorkerMessage<WorkerRequest>
            do { message = try channel.receive(WorkerMessage<WorkerRequest>.self) } catch {
                // The supervisor is gone (or sent garbage): leave the mount
                // to whoever comes next, as a crash would.
                log.warning("worker: channel to the supervisor lost (\(error)); exiting")
                _exit(3)
            }
            Thread.start {
                let reply = answer(message.body, mount: mount)
                try? channel.send(WorkerMessage(id: message.id, reply))
            }
        }
    }

    static func answer(_ request: WorkerRequest, mount: ServedMount) -> WorkerReply {
        switch request {
        case .status:
            return .status(mount.status)
        case .upgrade(let module, let action, let quiesceTimeout):
            // Each phase is logged as it ends, so that the journal shows how
            // far an interrupted upgrade got; from another thread, so that
            // writing the entry does not lengthen the pause.
            let report = mount.upgrade(to: module, action: action, quiesceTimeout: quiesceTimeout) { phase, report in
                phaseLog.async {
                    mount.log.event(.upgradePhase, "\(action.rawValue) of \(mount.settings.mountpoint): \(phase.phase.rawValue) took \(phase.micros) µs",
                                    ["from_version": report.fromVersion ?? "", "to_version": report.toVersion ?? "",
                                     "module": report.module ?? "", "action": action.rawValue, "phase": phase.phase.rawValue,
                                     "phase_us": "\(phase.micros)"])
                }
            }
            return .upgraded(report)
        case .handOver(let quiesceTimeout):
            return .handedOver(stateBytes: mount.handOver(quiesceTimeout: quiesceTimeout))
        case .health:
            let stats = mount.server.stats
            return .health(HealthSample(answered: stats.answeredByOperation, faults: stats.faultsByOperation,
                                        buckets: stats.latencyBuckets))
        }
    }
}
