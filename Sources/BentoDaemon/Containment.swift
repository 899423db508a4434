import BentoFUSE
import BentoWorker
import Glibc

/// What the supervisor makes of a worker's death: which requests caused it
/// (never to run again) and whether the mount goes back to the version it
/// served before the last upgrade. Pure, so that every rule is unit-tested.
struct DeathVerdict: Equatable {
    /// The module's doing: a fault signal, or a hang the worker was killed
    /// for. An outside kill (SIGKILL, SIGTERM, the OOM killer) is not.
    var fault: Bool
    /// Requests answered EIO when resent, with why.
    var culprits: [FlightRecorder.Entry]
    /// Back to the previous version: a fault while the new one is on probation.
    var rollBack: Bool
    /// For people: "SIGILL in create of \"poison\" in node 1", "killed from outside".
    var cause: String
}

enum Containment {
    /// Signals a fault in the worker's own code dies of.
    static let faultSignals: Set<Int32> = [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS]

    /// - exit: how the worker ended (a death, not exit 0).
    /// - killedForHang: the supervisor killed it for a request past the limit.
    /// - inFlight: the recorder's slots at the death.
    /// - inFlightAtPreviousDeath: requests in flight when the worker before
    ///   died: when no request is marked, one in flight at both deaths is a
    ///   culprit, whatever killed them (a fault the handler could not mark,
    ///   or a kill it keeps drawing).
    /// - onProbation: the version that died was upgraded to within its
    ///   probation window, and the version before it is known.
    static func verdict(exit: WorkerProcess.Exit, killedForHang: Bool, inFlight: [FlightRecorder.Entry],
                        inFlightAtPreviousDeath: Set<UInt64>, onProbation: Bool) -> DeathVerdict {
        var signal: Int32?
        if case .signalled(let s) = exit { signal = s }
        let fault = killedForHang || signal.map { faultSignals.contains($0) } ?? false
        let marked = inFlight.filter { $0.fault != 0 }
        // Two deaths in a row explain an unmarked death; when the handler
        // marked its request, the others in flight are known innocent.
        let repeated = marked.isEmpty ? inFlight.filter { inFlightAtPreviousDeath.contains($0.unique) } : []
        let culprits = marked + repeated
        let what: String
        if killedForHang {
            what = "a request ran past the hang limit"
        } else if let signal {
            what = fault ? "\(signalName(signal))" : "killed from outside (\(signalName(signal)))"
        } else if case .exited(let code) = exit {
            what = "exit status \(code)"
        } else {
            what = "died"
        }
        let during = marked.first.map { " in \($0.description)" } ?? ""
        return DeathVerdict(fault: fault, culprits: culprits, rollBack: fault && onProbation, cause: what + during)
    }

    static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGILL: "SIGILL", SIGFPE: "SIGFPE",
                                      SIGABRT: "SIGABRT", SIGTRAP: "SIGTRAP", SIGSYS: "SIGSYS", SIGKILL: "SIGKILL",
                                      SIGTERM: "SIGTERM", SIGINT: "SIGINT"]
        return names[signal] ?? "signal \(signal)"
    }

    /// Requests in flight longer than `limit` seconds at `now` (CLOCK_MONOTONIC ns).
    static func hung(_ inFlight: [FlightRecorder.Entry], now: UInt64, limit: Double) -> [FlightRecorder.Entry] {
        let limitNanoseconds = UInt64(max(limit, 0) * 1e9)
        return inFlight.filter { $0.startedNanoseconds > 0 && now > $0.startedNanoseconds && now - $0.startedNanoseconds > limitNanoseconds }
    }
}

/// A version just upgraded to, until its probation ends.
struct Probation: Equatable {
    /// The module it replaced: where an auto-rollback goes.
    var previous: String
    var previousVersion: String
    /// The module on probation.
    var module: String
    var version: String
    /// CLOCK_MONOTONIC seconds when it began and when it ends.
    var startedAt: Double
    var until: Double
    /// The health gate's reference: the old version's recent window, and
    /// the counters at the upgrade (nil: the gate has nothing to compare).
    var before: HealthSample? = nil
    var start: HealthSample? = nil

    func isActive(at now: Double) -> Bool { now < until }
    func secondsLeft(at now: Double) -> Double { max(0, until - now) }
}

/// The health gate: a version on probation whose replies to some
/// operation fail (EIO, EUCLEAN, EROFS, ...) more often than the version
/// before did, or whose replies are much slower, goes back, live. Each
/// operation is judged on its own: one that fails one read in ten must not
/// hide among many good creates.
struct HealthGate: Equatable {
    /// An operation's share of fault replies may rise this much at most.
    var maxFaultRateIncrease = 0.01
    /// The p99 latency may grow by this factor at most (and by 50 ms).
    var maxP99Factor = 4.0
    /// Below this many replies since the upgrade (all operations, or the
    /// one operation judged), nothing is judged.
    var minRequests: UInt64 = 50
    /// Latency is judged only on a longer window: the first seconds after
    /// an upgrade hold the requests that waited out its pause, and a
    /// shared machine's fsyncs swing by tens of milliseconds.
    var minLatencySeconds = 10.0
    var minLatencyRequests: UInt64 = 1000

    /// Why `after` (since the upgrade, `elapsed` seconds ago) regressed from
    /// `before` (the old version's recent window), or nil.
    func regression(before: HealthSample, after: HealthSample, elapsed: Double) -> String? {
        guard after.totalAnswered >= minRequests else { return nil }
        for op in after.answered.indices where after.answered[op] >= minRequests / 2 && after.faults[op] >= 3 {
            let now = after.faultRate(op), then = before.faultRate(op)
            if now > then + maxFaultRateIncrease {
                let name = op < RequestStats.operations.count ? RequestStats.operations[op] : "operation \(op)"
                return "health gate: \(percent(now)) of \(after.answered[op]) \(name) replies were errors such as EIO, "
                    + "\(percent(then)) before the upgrade"
            }
        }
        guard elapsed >= minLatencySeconds, after.totalAnswered >= minLatencyRequests,
              before.totalAnswered >= minLatencyRequests else { return nil }
        let p99 = after.p99Micros, old = before.p99Micros
        if Double(p99) > max(Double(old) * maxP99Factor, Double(old) + 50_000) {
            return "health gate: p99 latency \(p99) µs, \(old) µs before the upgrade"
        }
        return nil
    }

    private func percent(_ rate: Double) -> String {
        let tenths = Int((rate * 1000).rounded())
        return "\(tenths / 10).\(tenths % 10)%"
    }
}
