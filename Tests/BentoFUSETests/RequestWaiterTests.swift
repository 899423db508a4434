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
        let first = Box<UInt8>(0)
        Thread.detachNewThread {
            var byte: UInt8 = 0
            _ = waiter.read(pipe.output, &byte, 1)  // holds the turn, asleep in read
            first.value = byte
            firstTaken.signal()
            unblock.wait()  // the request's work blocks
        }
        usleep(20_000)
        let second = readInBackground(waiter, pipe)  // waits its turn
        usleep(20_000)
        pipe.send(1)
        #expect(firstTaken.wait(timeout: .now() + 5) == .success)
        pipe.send(2)
        #expect(second.taken.wait(timeout: .now() + 5) == .success)
        unblock.signal()
        #expect(first.value == 1)
        #expect(second.byte.value == 2)
    }

    /// While callers are many (three takes in a row found another request
    /// queued), still only one thread sleeps in read(2) at a time: the
    /// others wait their turn, and each gets it once the one before has
    /// taken a request and does not come back.
    @Test func oneThreadReadsAtATimeWhileCallersAreMany() throws {
        let pipe = try Pipe()
        let waiter = RequestWaiter(pollMicroseconds: 50, busyReaders: 1)
        var byte: UInt8 = 0
        for value: UInt8 in 1...4 { pipe.send(value) }
        for _ in 1...4 { #expect(waiter.read(pipe.output, &byte, 1) == 1) }
        let sleepers = Box(0), taken = Box<[UInt8]>([])
        let lock = NSLock(), done = DispatchSemaphore(value: 0)
        for _ in 1...4 {
            Thread.detachNewThread {
                var byte: UInt8 = 0
                let count = waiter.read(pipe.output, &byte, 1, beforeSleeping: { lock.withLock { sleepers.value += 1 } })
                lock.withLock { if count == 1 { taken.value.append(byte) } }
                done.signal()
            }
        }
        usleep(50_000)
        lock.withLock { #expect(sleepers.value == 1, "only the thread with the turn sleeps in read(2)") }
        for value: UInt8 in 5...8 { pipe.send(value) }
        for _ in 1...4 { #expect(done.wait(timeout: .now() + 5) == .success) }
        lock.withLock { #expect(taken.value.sorted() == [5, 6, 7, 8]) }
    }

    /// A request whose work keeps its thread on the CPU keeps the turn
    /// (the next request waits for that thread, not for a wake-up of
    /// another), up to `longNanoseconds`.
    @Test func aRunningRequestKeepsTheTurn() throws {
        let pipe = try Pipe()
        let waiter = RequestWaiter(pollMicroseconds: 50, busyReaders: 1)
        let firstTaken = DispatchSemaphore(value: 0)
        let first = Box<[UInt8]>([])
        Thread.detachNewThread {
            var byte: UInt8 = 0
            _ = waiter.read(pipe.output, &byte, 1)
            first.value.append(byte)
            firstTaken.signal()
            let start = RequestWaiter.now()  // works 5 ms on the CPU
            while RequestWaiter.now() &- start < RequestWaiter.longNanoseconds / 2 {}
            _ = waiter.read(pipe.output, &byte, 1)
            first.value.append(byte)
            firstTaken.signal()
        }
        usleep(20_000)
        let other = readInBackground(waiter, pipe)  // waits its turn
        usleep(20_000)
        pipe.send(1)
        #expect(firstTaken.wait(timeout: .now() + 5) == .success)
        pipe.send(2)
        #expect(firstTaken.wait(timeout: .now() + 5) == .success)
        #expect(first.value == [1, 2], "the working thread came back for the next request")
        pipe.send(3)
        #expect(other.taken.wait(timeout: .now() + 5) == .success)
        #expect(other.byte.value == 3)
    }
}

/// A thread that reads one request through `waiter`; `taken` is signalled
/// once it has, with the request in `byte`.
private func readInBackground(_ waiter: RequestWaiter, _ pipe: Pipe) -> (taken: DispatchSemaphore, byte: Box<UInt8>) {
    let taken = DispatchSemaphore(value: 0), byte = Box<UInt8>(0)
    Thread.detachNewThread {
        var value: UInt8 = 0
        _ = waiter.read(pipe.output, &value, 1)
        byte.value = value
        taken.signal()
    }
    return (taken, byte)
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
