@testable import BentoFUSE
import BentoKit
import Testing

/// A resent request (bit 63 of its unique id) whose first attempt already
/// took effect is answered as that attempt would have been; any other
/// request keeps its error.
@Suite struct ResendTests {
    func read(unique: UInt64) {
        requestHeader(unique: unique).withUnsafeBytes { Resend.noteRead($0.baseAddress!, $0.count) }
    }

    @Test func theFlagFollowsEachRequestReadOnThisThread() {
        read(unique: 42 | Resend.flag)
        #expect(Resend.isCurrent)
        read(unique: 43)
        #expect(!Resend.isCurrent)
    }

    @Test func aResentRequestThatFindsItsWorkDoneAnswersAsTheFirstAttempt() throws {
        read(unique: 7 | Resend.flag)
        var retries = 0
        let answer = try Resend.retrying(.EEXIST, { () throws -> Int in throw Errno.EEXIST },
                                         alreadyDone: { 1 }, onRetry: { retries += 1 })
        #expect(answer == 1)
        #expect(retries == 1)
    }

    @Test func otherErrorsAndFreshRequestsKeepTheirError() {
        read(unique: 8 | Resend.flag)
        #expect(throws: Errno.EACCES) {
            try Resend.retrying(.EEXIST, { () throws -> Int in throw Errno.EACCES }, alreadyDone: { 1 })
        }
        read(unique: 9)
        #expect(throws: Errno.EEXIST) {
            try Resend.retrying(.EEXIST, { () throws -> Int in throw Errno.EEXIST }, alreadyDone: { 1 })
        }
    }
}
