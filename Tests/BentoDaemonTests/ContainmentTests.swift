@testable import BentoDaemon
import BentoFUSE
import BentoWorker
import Glibc
import Testing

/// The rules that decide, after a worker died, which requests never run
/// again and whether the mount goes back to the version before.
struct ContainmentTests {
    let create = FlightRecorder.Entry(slot: 0, unique: 40, opcode: 35, node: 1, name: "poison", fault: SIGILL)
    let read = FlightRecorder.Entry(slot: 1, unique: 41, opcode: 15, node: 7)
    let write = FlightRecorder.Entry(slot: 2, unique: 42, opcode: 16, node: 7)

    @Test func aTrapOnProbationQuarantinesItsRequestAndRollsBack() {
        let v = Containment.verdict(exit: .signalled(SIGILL), killedForHang: false, inFlight: [create, read],
                                    inFlightAtPreviousDeath: [], onProbation: true)
        #expect(v.fault && v.rollBack)
        #expect(v.culprits == [create])
        #expect(v.cause == "SIGILL in create of \"poison\" in node 1")
    }

    @Test func aTrapAfterProbationQuarantinesButStays() {
        let v = Containment.verdict(exit: .signalled(SIGILL), killedForHang: false, inFlight: [create, read],
                                    inFlightAtPreviousDeath: [], onProbation: false)
        #expect(v.fault && !v.rollBack)
        #expect(v.culprits.map(\.unique) == [40])
    }

    @Test func anOutsideKillRetriesEverythingAndNeverRollsBack() {
        for signal in [SIGKILL, SIGTERM] {
            let v = Containment.verdict(exit: .signalled(signal), killedForHang: false, inFlight: [read, write],
                                        inFlightAtPreviousDeath: [], onProbation: true)
            #expect(!v.fault && !v.rollBack && v.culprits.isEmpty)
        }
    }

    @Test func inFlightAtTwoDeathsInARowIsACulpritWhateverKilledThem() {
        // A fault the handler could not mark (say, a stack overflow without
        // room for the handler) or a kill the request keeps drawing.
        let v = Containment.verdict(exit: .signalled(SIGKILL), killedForHang: false, inFlight: [read, write],
                                    inFlightAtPreviousDeath: [42, 99], onProbation: true)
        #expect(v.culprits == [write])
        #expect(!v.rollBack)
        let unmarked = Containment.verdict(exit: .signalled(SIGSEGV), killedForHang: false, inFlight: [read, write],
                                           inFlightAtPreviousDeath: [41], onProbation: true)
        #expect(unmarked.culprits == [read] && unmarked.rollBack)
    }

    @Test func aMarkedDeathSparesTheOthersInFlightTwice() {
        // A poison that traps again right after the first death: the read
        // the kernel resent is in flight at both deaths, but the handler
        // named the culprit, so the read is retried, not quarantined.
        let v = Containment.verdict(exit: .signalled(SIGILL), killedForHang: false, inFlight: [create, read],
                                    inFlightAtPreviousDeath: [41], onProbation: false)
        #expect(v.culprits == [create])
    }

    @Test func aHangIsAFault() {
        var hung = write
        hung.fault = FlightRecorder.hang
        let v = Containment.verdict(exit: .signalled(SIGKILL), killedForHang: true, inFlight: [hung, read],
                                    inFlightAtPreviousDeath: [], onProbation: true)
        #expect(v.fault && v.rollBack && v.culprits == [hung])
        #expect(v.cause.hasPrefix("a request ran past the hang limit"))
    }

    @Test func hungFindsOnlyRequestsPastTheLimit() {
        var old = read, fresh = write
        old.startedNanoseconds = 1_000_000_000
        fresh.startedNanoseconds = 30_000_000_000
        let found = Containment.hung([old, fresh], now: 31_500_000_000, limit: 30)
        #expect(found == [old])
        #expect(Containment.hung([old, fresh], now: 2_000_000_000, limit: 30).isEmpty)
    }

    @Test func probationEnds() {
        let p = Probation(previous: "/m/1.so", previousVersion: "1.0.0", module: "/m/2.so", version: "2.0.1",
                          startedAt: 40, until: 100)
        #expect(p.isActive(at: 99.9) && !p.isActive(at: 100))
        #expect(p.secondsLeft(at: 40) == 60 && p.secondsLeft(at: 200) == 0)
    }
}

struct HealthGateTests {
    let gate = HealthGate()
    /// `reads` read replies and `creates` create replies (RequestStats'
    /// operation numbers), `faults` of the reads failing; latencies all in
    /// bucket `p99Bucket`.
    func sample(reads: UInt64, faults: UInt64 = 0, creates: UInt64 = 0, p99Bucket: Int = 6) -> HealthSample {
        var answered = [UInt64](repeating: 0, count: RequestStats.operations.count)
        var failed = answered
        answered[Operation.read.rawValue] = reads
        answered[Operation.create.rawValue] = creates
        failed[Operation.read.rawValue] = faults
        var buckets = [UInt64](repeating: 0, count: 40)
        buckets[p99Bucket] = reads + creates
        return HealthSample(answered: answered, faults: failed, buckets: buckets)
    }

    @Test func moreErrorsThanBeforeRollBack() {
        let why = gate.regression(before: sample(reads: 1000), after: sample(reads: 200, faults: 20), elapsed: 1)
        #expect(why?.contains("10.0% of 200 read replies were errors") == true)
    }

    @Test func aFailingOperationDoesNotHideAmongGoodOnes() {
        // 20 failed reads in 5,200 replies is 0.4% overall, 10% of reads.
        let why = gate.regression(before: sample(reads: 1000, creates: 5000), after: sample(reads: 200, faults: 20, creates: 5000), elapsed: 1)
        #expect(why?.contains("read replies") == true)
    }

    @Test func asManyErrorsAsBeforeDoNot() {
        #expect(gate.regression(before: sample(reads: 1000, faults: 100), after: sample(reads: 200, faults: 20), elapsed: 1) == nil)
    }

    @Test func tooFewRequestsSayNothing() {
        #expect(gate.regression(before: sample(reads: 1000), after: sample(reads: 10, faults: 10), elapsed: 1) == nil)
    }

    @Test func muchSlowerRepliesRollBackOnALongEnoughWindow() {
        // Under 128 µs before; under 262 ms after.
        let before = sample(reads: 2000, p99Bucket: 6), slow = sample(reads: 2000, p99Bucket: 17)
        #expect(gate.regression(before: before, after: slow, elapsed: 20) != nil)
        // Not in the first seconds, which hold the upgrade's own pause.
        #expect(gate.regression(before: before, after: slow, elapsed: 3) == nil)
        // Nor on a few hundred requests.
        #expect(gate.regression(before: before, after: sample(reads: 300, p99Bucket: 17), elapsed: 20) == nil)
        // Slower, but within 50 ms: the noise of fsyncs on a shared machine.
        #expect(gate.regression(before: before, after: sample(reads: 2000, p99Bucket: 14), elapsed: 20) == nil)
    }

    @Test func samplesSubtract() {
        let a = sample(reads: 100, faults: 1), b = sample(reads: 250, faults: 4)
        #expect(b.since(a).totalAnswered == 150 && b.since(a).faults[Operation.read.rawValue] == 3)
    }
}

struct HealthSampleTests {
    @Test func aRestartedWorkerStartsItsOwnWindow() {
        // The new worker's counters begin at 0, below the old one's: no
        // negative window (it used to wrap around and trap the supervisor).
        let old = HealthSample(answered: [5000], faults: [2], buckets: [4000, 1000])
        let fresh = HealthSample(answered: [40], faults: [0], buckets: [30, 10])
        #expect(fresh.since(old) == fresh)
        #expect(fresh.since(old).p99Micros == 4)
    }
}
