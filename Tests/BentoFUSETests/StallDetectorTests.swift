import BentoFUSE
import Testing

@Suite struct StallDetectorTests {
    /// A detector with a 10 s limit, looked at through `look(answered, inside, now)`.
    final class Watch {
        var detector = StallDetector(limit: 10)
        func look(_ answered: UInt64, _ inside: Int, _ now: Double) -> Bool {
            detector.isStuck(answered: answered, inside: inside, now: now)
        }
    }

    @Test func idleIsNeverStuck() {
        let watch = Watch()
        for t in stride(from: 0.0, through: 100, by: 5) { #expect(!watch.look(7, 0, t)) }
    }

    @Test func busyIsNotStuck() {
        let watch = Watch()
        for (i, t) in stride(from: 0.0, through: 100, by: 5).enumerated() { #expect(!watch.look(UInt64(i), 3, t)) }
    }

    @Test func requestsInsideAndNothingAnsweredPastTheLimitIsStuck() {
        let watch = Watch()
        #expect(!watch.look(5, 1, 100))  // first look: starts the clock
        #expect(!watch.look(5, 1, 105))
        #expect(!watch.look(5, 2, 110))  // exactly the limit: not yet
        #expect(watch.look(5, 2, 110.5))
        // One answer restarts the clock.
        #expect(!watch.look(6, 2, 111))
        #expect(!watch.look(6, 2, 120))
        #expect(watch.look(6, 2, 121.5))
    }

    @Test func goingIdleRestartsTheClock() {
        let watch = Watch()
        #expect(!watch.look(1, 1, 0))
        #expect(!watch.look(1, 0, 8))
        #expect(!watch.look(1, 1, 9))
        #expect(!watch.look(1, 1, 18))
        #expect(watch.look(1, 1, 19.5))
    }
}
