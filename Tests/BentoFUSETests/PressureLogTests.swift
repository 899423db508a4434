@testable import BentoFUSE
import Dispatch
import Glibc
import Synchronization
import Testing

@Suite struct PressureLogTests {
    /// A clock the test sets, and the entries written.
    final class Harness: Sendable {
        final class Seen: Sendable {
            let time = Mutex<Double>(1000)
            let written = Mutex<[PressureLog.Entry]>([])
        }
        let seen: Seen
        let log: PressureLog

        init(interval: Double = 60) {
            let seen = Seen()
            self.seen = seen
            log = PressureLog(interval: interval, clock: { seen.time.withLock { $0 } },
                              write: { entry in seen.written.withLock { $0.append(entry) } })
        }

        func at(_ seconds: Double) { seen.time.withLock { $0 = 1000 + seconds } }

        /// The entries written since the last call.
        func entries() -> [PressureLog.Entry] {
            seen.written.withLock { all in
                let taken = all
                all = []
                return taken
            }
        }
    }

    let full = PressureLog.failedRequests(ENOSPC)!
    let provenance = PressureLog.Condition("provenance not recorded", ENOSPC)

    @Test func theFirstIsLoggedAtOnceThenOneSummaryPerIntervalThenAllClear() {
        let h = Harness()
        h.log.note(full, detail: "write")
        let began = h.entries()
        #expect(began.count == 1)
        #expect(began.first?.kind == .began)
        #expect(began.first?.count == 1)
        #expect(began.first?.description
                == "requests failed (ENOSPC), first: write; more are counted, with a summary every 60 s while they go on")
        for i in 1...10_000 {
            h.at(Double(i) / 1000)
            h.log.note(full, detail: "write")
        }
        h.at(30)
        h.log.tick()
        #expect(h.entries().isEmpty, "nothing before an interval has passed")
        h.at(60)
        h.log.tick()
        let summary = h.entries()
        #expect(summary.map(\.kind) == [.summary])
        #expect(summary.first?.count == 10_000)
        #expect(summary.first?.total == 10_001)
        #expect(summary.first?.description == "requests failed (ENOSPC): 10000 in the last 60 s, 10001 since it began")
        // Five more, then quiet: one more summary, then the all-clear an
        // interval after the last one.
        h.at(70)
        for _ in 0..<5 { h.log.note(full) }
        h.at(119)
        h.log.tick()
        #expect(h.entries().isEmpty)
        h.at(120)
        h.log.tick()
        #expect(h.entries().map(\.count) == [5])
        h.at(129)
        h.log.tick()
        #expect(h.entries().isEmpty, "the last one was 59 s ago")
        h.at(130)
        h.log.tick()
        let cleared = h.entries()
        #expect(cleared.map(\.kind) == [.cleared])
        #expect(cleared.first?.total == 10_006)
        #expect(cleared.first?.description == "requests failed (ENOSPC): cleared, none for 60 s; 10006 in all over 130 s")
        h.at(500)
        h.log.tick()
        #expect(h.entries().isEmpty, "cleared once")
        // It comes back: a new first entry, and the totals go on.
        h.log.note(full, detail: "create")
        #expect(h.entries().map(\.kind) == [.began])
        let count = h.log.counts
        #expect(count.count == 1)
        #expect(count.first?.total == 10_007)
        #expect(count.first?.active == true)
    }

    @Test func aSingleOccurrenceIsClearedAfterAnInterval() {
        let h = Harness(interval: 2)
        h.log.note(provenance)
        #expect(h.entries().map(\.kind) == [.began])
        h.at(1.9)
        h.log.tick()
        #expect(h.entries().isEmpty)
        h.at(2)
        h.log.tick()
        #expect(h.entries().map(\.kind) == [.cleared], "no summary: nothing was counted after the first")
        #expect(h.log.counts.first?.active == false)
        #expect(h.log.counts.first?.lastSecondsAgo == 2)
    }

    @Test func conditionsAreCountedApartByWhatAndErrno() {
        let h = Harness()
        h.log.note(full)
        h.log.note(PressureLog.failedRequests(EIO)!)
        h.log.note(provenance)
        h.log.note(provenance)
        h.log.note(PressureLog.Condition("provenance not recorded", EIO))
        #expect(h.entries().count == 4)
        #expect(PressureLog.failedRequests(ENOENT) == nil, "an absent name is no pressure")
        #expect(PressureLog.failedRequests(EEXIST) == nil)
        #expect(PressureLog.failedRequests(EUCLEAN) != nil)
        // The same words from another string literal are the same condition.
        let words = "provenance not recorded"
        #expect(PressureLog.Condition("provenance not recorded", ENOSPC) == provenance)
        #expect(PressureLog.Condition("provenance not recorded", ENOSPC).hashValue == provenance.hashValue)
        #expect(provenance.description == words + " (ENOSPC)")
        #expect(h.log.counts.map { "\($0.condition) \($0.total)" } == [
            "provenance not recorded (EIO) 1", "provenance not recorded (ENOSPC) 2",
            "requests failed (EIO) 1", "requests failed (ENOSPC) 1",
        ])
    }

    @Test func flushSummarizesWhatIsPendingNow() {
        let h = Harness()
        h.log.note(full)
        _ = h.entries()
        h.at(5)
        for _ in 0..<3 { h.log.note(full) }
        h.log.flush()
        let flushed = h.entries()
        #expect(flushed.map(\.count) == [3])
        #expect(flushed.first?.description == "requests failed (ENOSPC): 3 in the last 5.0 s, 4 since it began")
        h.log.flush()
        #expect(h.entries().isEmpty)
    }

    /// Counts from many threads at once add up; the first is written once.
    @Test func concurrentNotesAddUp() {
        let h = Harness(interval: 3600)
        let threads = 8, each = 20_000
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            for _ in 0..<each {
                h.log.note(PressureLog.failedRequests(EIO)!)
                h.log.note(PressureLog.quarantined)
            }
        }
        #expect(h.log.counts.map(\.total) == [UInt64(threads * each), UInt64(threads * each)])
        #expect(h.entries().map(\.kind) == [.began, .began])
    }

    @Test func intervalFromTheEnvironment() {
        unsetenv("BENTO_PRESSURE_INTERVAL")
        #expect(PressureLog.intervalFromEnvironment() == 60)
        setenv("BENTO_PRESSURE_INTERVAL", "1.5", 1)
        #expect(PressureLog.intervalFromEnvironment() == 1.5)
        setenv("BENTO_PRESSURE_INTERVAL", "0", 1)
        #expect(PressureLog.intervalFromEnvironment() == nil)
        setenv("BENTO_PRESSURE_INTERVAL", "soon", 1)
        #expect(PressureLog.intervalFromEnvironment() == nil)
        unsetenv("BENTO_PRESSURE_INTERVAL")
    }

    @Test func secondsAreWordedShort() {
        #expect(PressureLog.seconds(60) == "60 s")
        #expect(PressureLog.seconds(1.5) == "1.5 s")
        #expect(PressureLog.seconds(0.04) == "0.0 s")
        #expect(PressureLog.seconds(9.96) == "10 s")
    }
}
