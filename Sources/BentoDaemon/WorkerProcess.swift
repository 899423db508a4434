import BentoControl
import BentoServices
import BentoWorker
import CBentoWorker
import FoundationEssentials
import Glibc
import Synchronization

/// One worker process as the supervisor sees it: started with the mount's
/// descriptors at WorkerFD's numbers, asked things over its channel, and
/// waited for. Must be started from a thread that lives as long as the
/// worker: the worker dies with the thread that started it (PDEATHSIG).
final class WorkerProcess: @unchecked Sendable {
    let pid: pid_t
    private let channel: WorkerChannel
    private let pending = Guarded<[UInt64: Pending]>([:])
    private let nextID = Atomic<UInt64>(1)
    /// The worker's first message (`started` or `failed`).
    private let first = Guarded<WorkerReply?>(nil)
    private let firstArrived = Semaphore()
    private let gone = Atomic<Bool>(false)

    private final class Pending: @unchecked Sendable {
        let done = Semaphore()
        var reply: WorkerReply?
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// The descriptors a worker gets, at their WorkerFD numbers.
    struct Descriptors {
        var fuse: Int32
        var image: Int32
        var journal: Int32
        var recorder: Int32
        var stateIn: Int32?
        var stateOut: Int32
    }

    /// Starts `bento-upgraded --worker` and sends it `start`.
    init(_ start: WorkerStart, descriptors: Descriptors) throws {
        let (mine, theirs) = try WorkerChannel.pair()
        var given: [(Int32, Int32)] = [(theirs.fd, WorkerFD.channel), (descriptors.fuse, WorkerFD.fuse),
                                       (descriptors.image, WorkerFD.image), (descriptors.journal, WorkerFD.journal),
                                       (descriptors.recorder, WorkerFD.recorder), (descriptors.stateOut, WorkerFD.stateOut)]
        if let stateIn = descriptors.stateIn { given.append((stateIn, WorkerFD.stateIn)) }
        pid = try Self.spawn(given)
        channel = mine
        Thread.start { [self] in readReplies() }
        do { try channel.send(start) } catch {
            kill(pid, SIGKILL)
            throw Failure("worker \(pid): \(error)")
        }
    }

    /// The executable of this process, run again as a worker.
    private static func spawn(_ given: [(Int32, Int32)]) throws -> pid_t {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(executable), strdup("--worker"), nil]
        defer { for arg in argv { free(arg) } }
        let pid = bento_spawn("/proc/self/exe", argv, environ, given.map(\.0), given.map(\.1), Int32(given.count))
        guard pid > 0 else { throw Failure("starting a worker: \(String(cString: strerror(-pid)))") }
        return pid
    }

    /// Replies, by number, to whoever waits for them; on a closed channel
    /// (the worker died) every waiter hears nil.
    private func readReplies() {
        while true {
            guard let message = try? channel.receive(WorkerMessage<WorkerReply>.self) else { break }
            if message.id == 0 {
                first.withLock { $0 = message.body }
                firstArrived.signal()
                continue
            }
            let waiter = pending.withLock { $0.removeValue(forKey: message.id) }
            waiter?.reply = message.body
            waiter?.done.signal()
        }
        gone.store(true, ordering: .releasing)
        firstArrived.signal()
        for waiter in pending.withLock({ table in defer { table = [:] }; return Array(table.values) }) { waiter.done.signal() }
    }

    /// The worker's first message: `started` once it serves, or `failed`;
    /// nil if it died or said nothing within `timeout` seconds.
    func firstReply(timeout: Double) -> WorkerReply? {
        _ = firstArrived.wait(seconds: timeout)
        firstArrived.signal()
        return first.withLock { $0 }
    }

    /// Asks the worker; nil if it died or did not answer within `timeout`.
    func call(_ request: WorkerRequest, timeout: Double? = nil) -> WorkerReply? {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        let waiter = Pending()
        pending.withLock { $0[id] = waiter }
        guard !gone.load(ordering: .acquiring), (try? channel.send(WorkerMessage(id: id, request))) != nil else {
            pending.withLock { _ = $0.removeValue(forKey: id) }
            return nil
        }
        if let timeout {
            guard waiter.done.wait(seconds: timeout) else {
                pending.withLock { _ = $0.removeValue(forKey: id) }
                return nil
            }
        } else {
            waiter.done.wait()
        }
        return waiter.reply
    }

    /// How a worker ended.
    enum Exit: Equatable {
        case exited(Int32)
        case signalled(Int32)
    }

    /// Waits until the worker has ended.
    func wait() -> Exit {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return .exited(-1) }
        }
        let signal = status & 0x7f
        return signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
    }
}
