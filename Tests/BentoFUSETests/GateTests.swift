@testable import BentoFUSE
import Dispatch
import Foundation
import Testing

@Suite struct GateTests {
    @Test func closeWaitsForRequestsInsideAndHoldsNewOnes() async throws {
        let gate = Gate()
        gate.enter()  // a request in flight
        let closed = DispatchSemaphore(value: 0)
        let result = Box(false)
        DispatchQueue.global().async {
            result.value = gate.close(timeoutNanoseconds: 5_000_000_000)
            closed.signal()
        }
        usleep(50_000)
        #expect(closed.wait(timeout: .now()) == .timedOut)  // still draining
        gate.leave()
        #expect(closed.wait(timeout: .now() + 5) == .success)
        #expect(result.value)
        // Closed: a new request waits until the gate reopens.
        let admitted = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { gate.enter(); admitted.signal(); gate.leave() }
        #expect(admitted.wait(timeout: .now() + 0.1) == .timedOut)
        gate.reopen()
        #expect(admitted.wait(timeout: .now() + 5) == .success)
    }

    @Test func closeGivesUpAtTheDeadlineAndReopens() {
        let gate = Gate()
        gate.enter()
        #expect(gate.close(timeoutNanoseconds: 20_000_000) == false)
        // Reopened: others get in while the slow request is still inside.
        let admitted = DispatchSemaphore(value: 0)
        let left = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { gate.enter(); admitted.signal(); gate.leave(); left.signal() }
        #expect(admitted.wait(timeout: .now() + 5) == .success)
        gate.leave()
        // Count once the other request has left too, not while it may still be inside.
        #expect(left.wait(timeout: .now() + 5) == .success)
        #expect(gate.count == 0)
    }

    @Test func manyThreadsPassWhileItClosesAndReopens() {
        let gate = Gate()
        let inside = Box(0)
        let violations = Box(0)
        let lock = NSLock()
        let group = DispatchGroup()
        for _ in 0..<4 {
            DispatchQueue.global().async(group: group) {
                for _ in 0..<20_000 {
                    gate.pass {
                        lock.withLock { inside.value += 1 }
                        lock.withLock { inside.value -= 1 }
                    }
                }
            }
        }
        for _ in 0..<50 {
            if gate.close(timeoutNanoseconds: 1_000_000_000) {
                // While closed, nobody may be inside.
                if lock.withLock({ inside.value }) != 0 { violations.value += 1 }
                gate.reopen()
            }
        }
        group.wait()
        #expect(violations.value == 0)
        #expect(gate.count == 0)
    }

    @Test func statsCountAndRankLatencies() {
        let stats = RequestStats()
        for _ in 0..<98 { stats.record(Operation.getattr.rawValue, nanoseconds: 3_000) }  // 3 µs
        stats.record(Operation.write.rawValue, nanoseconds: 900_000)  // 900 µs
        stats.record(Operation.write.rawValue, nanoseconds: 5_000_000)  // 5 ms
        #expect(stats.operationCounts == ["getattr": 98, "write": 2])
        let l = stats.latencyMicros
        #expect(l.p50 == 4)  // the [2, 4) µs bucket
        #expect(l.p90 == 4)
        #expect(l.p99 == 1024)  // the [512, 1024) µs bucket
        #expect(l.max == 5000)
    }
}

final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
