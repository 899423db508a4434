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

    /// Many callers: one reader per CPU at once, the rest waiting their
    /// turn; and when every reader's request blocks, the watchdog still
    /// lets a waiting thread read the next one.
    @Test(.enabled(if: sysconf(Int32(_SC_NPROCESSORS_ONLN)) >= 2, "the waiter takes turns only with two CPUs or more"))
    func manyCallersGetOneReaderPerCPU() throws {
        let pipe = try Pipe()
        let waiter = RequestWaiter(pollMicroseconds: 50, busyMilliseconds: 60_000)
        var byte: UInt8 = 0
        // Three takes in a row, each with another request queued behind.
        for value: UInt8 in 1...4 { pipe.send(value) }
        for _ in 1...4 { #expect(waiter.read(pipe.output, &byte, 1) == 1) }

        // One thread more than may read at once; each blocks in its
        // request's work once it has one.
        let readers = waiter.busyReaders
        let taken = DispatchSemaphore(value: 0), unblock = DispatchSemaphore(value: 0)
        for _ in 0...readers {
            Thread.detachNewThread {
                var byte: UInt8 = 0
                _ = waiter.read(pipe.output, &byte, 1)
                taken.signal()
                unblock.wait()
            }
        }
        #expect(Self.eventually { waiter.counts == (readers, 1) })
        for value in 0..<readers { pipe.send(UInt8(10 + value)) }
        for _ in 0..<readers { #expect(taken.wait(timeout: .now() + 5) == .success) }
        // Every reader's request blocks: the waiting thread gets the next.
        pipe.send(99)
        #expect(taken.wait(timeout: .now() + 5) == .success)
        for _ in 0...readers { unblock.signal() }
    }

    /// Whether `condition` holds within 5 s.
    private static func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<500 {
            if condition() { return true }
            usleep(10_000)
        }
        return false
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
