@testable import BentoFUSE
import Dispatch
import Foundation
import Testing

@Suite struct ForgetsInFlightTests {
    @Test func statfsWaitsForTheForgetsReadBeforeIt() {
        let forgets = ForgetsInFlight()
        for opcode: UInt32 in [2, 42, 17] { requestHeader(opcode: opcode).withUnsafeBytes { forgets.noteRead($0.baseAddress!, 40) } }
        let returned = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { forgets.waitForEarlier(); returned.signal() }
        forgets.done()  // the FORGET; the BATCH_FORGET still runs (17, STATFS, is not counted)
        #expect(returned.wait(timeout: .now() + 0.1) == .timedOut)
        forgets.done()
        #expect(returned.wait(timeout: .now() + 5) == .success)
        // A FORGET that never ends holds STATFS up to the limit, not forever.
        requestHeader(opcode: 2).withUnsafeBytes { forgets.noteRead($0.baseAddress!, 40) }
        let start = Date()
        forgets.waitForEarlier()
        #expect(Date().timeIntervalSince(start) >= 0.9)
    }
}
