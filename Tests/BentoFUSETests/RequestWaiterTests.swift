@testable import BentoFUSE
import Dispatch
import Foundation
import Testing

/// RequestWaiter over a pipe, which polls and reads as /dev/fuse does: one
/// byte is one request.
@Suite struct RequestWaiterTests {
    @Test func aLoneReaderGetsEveryRequest() throws {
        let pipe = try Pipe()
        let waiter = RequestWaiter(pollMicroseconds: 50)
        var byte: UInt8 = 0
        for value: UInt8 in 1...20 {
            pipe.send(value)
            if value % 5 == 0 { usleep(200) }  // past the polling: asleep in read
            #expect(waiter.read(pipe.output, &byte, 1) == 1)
            #expect(byte == value)
        }
    }

    /// Work put off for an idle moment (DeferredForgets) runs before the
    /// reader sleeps, never while a request waits to be read.
    @Test func beforeSleepingRunsOnlyWhenNoRequestWaits() throws {
        for poll in [50, 0] {
            let pipe = try Pipe()
            let waiter = RequestWaiter(pollMicroseconds: poll)
            var byte: UInt8 = 0, called = 0
            pipe.send(1)
            usleep(1000)
            #expect(waiter.read(pipe.output, &byte, 1, beforeSleeping: { called += 1 }) == 1)
            if waiter.pollNanoseconds > 0 { #expect(called == 0, "a request was waiting") }
            DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) { pipe.send(2) }
            called = 0
            #expect(waiter.read(pipe.output, &byte, 1, beforeSleeping: { called += 1 }) == 1)
            #expect(byte == 2)
            #expect(called == 1, "nothing came while it polled: it ran the work, then slept")
        }
    }

    /// The reader takes a request whose work blocks: the thread waiting its
    /// turn must still read the next one (the watchdog hands the turn on),
    /// as when a flush waits on the kernel's writes through the same mount.
    @Test func aBlockedRequestDoesNotKeepTheNextOneUnread() throws {
        let pipe = try Pipe()
        let waiter = RequestWaiter(pollMicroseconds: 50)
        let firstTaken = DispatchSemaphore(value: 0), unblock = DispatchSemaphore(value: 0)
        let secondTaken = DispatchSemaphore(value: 0)
        let first = Box<UInt8>(0), second = Box<UInt8>(0)
        Thread.detachNewThread {
            var byte: UInt8 = 0
            _ = waiter.read(pipe.output, &byte, 1)  // holds the turn, asleep in read
            first.value = byte
            firstTaken.signal()
            unblock.wait()  // the request's work blocks
        }
        usleep(20_000)
        Thread.detachNewThread {
            var byte: UInt8 = 0
            _ = waiter.read(pipe.output, &byte, 1)  // waits its turn
            second.value = byte
            secondTaken.signal()
        }
        usleep(20_000)
        pipe.send(1)
        #expect(firstTaken.wait(timeout: .now() + 5) == .success)
        pipe.send(2)
        #expect(secondTaken.wait(timeout: .now() + 5) == .success)
        unblock.signal()
        #expect(first.value == 1)
        #expect(second.value == 2)
    }
}

private final class Pipe: Sendable {
    let output: Int32, input: Int32
    init() throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw POSIXError(.EMFILE) }
        (output, input) = (fds[0], fds[1])
    }
    func send(_ value: UInt8) {
        var value = value
        _ = write(input, &value, 1)
    }
    deinit { close(output); close(input) }
}
