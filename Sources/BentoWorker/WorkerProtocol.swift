import BentoControl
import FoundationEssentials
import Glibc

/// How the supervisor (bento-upgraded) and a mount's worker process talk.
/// The supervisor mounts, owns every long-lived descriptor (the /dev/fuse
/// session, the image, the operation journal, the flight recorder) and
/// hands them to the worker at fixed numbers; the worker runs the module and
/// answers requests on its channel, one at a time. A worker that dies takes
/// only its module instance with it: the next one adopts the same session.
public enum WorkerFD {
    /// The channel to the supervisor (SOCK_SEQPACKET: one message a packet).
    public static let channel: Int32 = 3
    public static let fuse: Int32 = 4
    public static let image: Int32 = 5
    public static let journal: Int32 = 6
    public static let recorder: Int32 = 7
    /// State a restarted daemon saved (restarted origin only).
    public static let stateIn: Int32 = 8
    /// Where a hand-over writes the exported state.
    public static let stateOut: Int32 = 9
}

/// One mount's settings, as the config (or the command line) gives them.
public struct MountSettings: Codable, Equatable, Sendable {
    public var image: String
    public var mountpoint: String
    public var module: String
    public var threads = 8
    public var cacheMiB = 256
    public var allowOther = false
    /// Off by default: an unlink, and a stat of a file closed without a
    /// read or a write, then cost a request less; ENOSPC comes at write(2)
    /// (Docs/caching.md).
    public var writebackCache = false
    /// With the writeback cache, check writes one by one once free space
    /// falls to what the kernel may hold dirty (SpaceGuard); off only to
    /// measure what the check costs.
    public var writeSpaceCheck = true
    /// After an upgrade, how long a fault or a hang of the new version
    /// rolls the mount back to the version before.
    public var probationSeconds: Double = 60
    /// A request running longer than this is treated as a fault.
    public var hangLimitSeconds: Double = 30
    /// The health gate's thresholds during a probation: fault replies may
    /// rise by this share of all replies, the p99 latency by this factor.
    public var healthMaxFaultRateIncrease = 0.01
    public var healthMaxP99Factor = 4.0
    /// Serve the image read-only: open it read-only, mount read-only, and
    /// have the module write nothing. Stored as an optional so that the
    /// settings a daemon from before it saved still decode.
    public var readOnly: Bool {
        get { readOnlySetting ?? false }
        set { readOnlySetting = newValue ? true : nil }
    }
    private var readOnlySetting: Bool?
    /// How long the thread reading requests polls for the next one
    /// before it sleeps, in microseconds (0: never; FuseServer's
    /// RequestWaiter). Optional for the same reason as `readOnly`.
    public var pollMicroseconds: Int {
        get { pollSetting ?? Self.defaultPollMicroseconds }
        set { pollSetting = newValue == Self.defaultPollMicroseconds ? nil : newValue }
    }
    private var pollSetting: Int?
    public static let defaultPollMicroseconds = 50

    public init(image: String, mountpoint: String, module: String, threads: Int = 8, cacheMiB: Int = 256,
                allowOther: Bool = false, writebackCache: Bool = false, probationSeconds: Double = 60,
                hangLimitSeconds: Double = 30, readOnly: Bool = false) {
        self.image = image
        self.mountpoint = mountpoint
        self.module = module
        self.threads = threads
        self.cacheMiB = cacheMiB
        self.allowOther = allowOther
        self.writebackCache = writebackCache
        self.probationSeconds = probationSeconds
        self.hangLimitSeconds = hangLimitSeconds
        self.readOnly = readOnly
    }

    /// Everything but the module: the module a mount serves changes by
    /// upgrade, not by reload.
    public func sameMount(as other: Self) -> Bool {
        var mine = self, theirs = other
        mine.module = ""; theirs.module = ""
        return mine == theirs
    }
}

/// The first message on a new worker's channel.
public struct WorkerStart: Codable, Sendable {
    public enum Origin: String, Codable, Sendable {
        /// A fresh mount: the worker reads the kernel's INIT itself.
        case mounted
        /// A session another process served, with the state it exported.
        case restarted
        /// A session whose server died: recovered from the disk and the
        /// operation journal.
        case recovered
        /// No session any more (unmounted while its worker died): recover
        /// from the disk and the operation journal, flush, and exit.
        case flush
    }

    public var settings: MountSettings
    public var origin: Origin
    /// Adopted sessions: the kernel's INIT request, and whether the
    /// writeback cache was agreed at it.
    public var initRequest: [UInt8]?
    public var writebackCache: Bool?
    /// Requests (unique ids) that faulted or hung a worker: when the kernel
    /// resends them they are answered EIO, never run again.
    public var quarantine: [UInt64]

    public init(settings: MountSettings, origin: Origin, initRequest: [UInt8]? = nil, writebackCache: Bool? = nil,
                quarantine: [UInt64] = []) {
        self.settings = settings
        self.origin = origin
        self.initRequest = initRequest
        self.writebackCache = writebackCache
        self.quarantine = quarantine
    }
}

/// What the supervisor asks a running worker.
public enum WorkerRequest: Codable, Sendable {
    case status
    /// Upgrade or roll back (`action`) to the module at `module`.
    case upgrade(module: String, action: UpgradeAction, quiesceTimeout: Double)
    /// For a restart: close the gate, commit, and write the exported state
    /// to WorkerFD.stateOut; the worker then only waits to be killed.
    case handOver(quiesceTimeout: Double)
    /// The counters the health gate compares (HealthSample).
    case health
}

/// Cumulative counters of a worker's replies, for the health gate: the
/// supervisor subtracts two samples to get a window.
public struct HealthSample: Codable, Equatable, Sendable {
    /// Requests answered, by operation (RequestStats' numbering).
    public var answered: [UInt64]
    /// Replies with an error that says the file system failed (EIO, ...),
    /// by operation.
    public var faults: [UInt64]
    /// Latency histogram (RequestStats.latencyBuckets).
    public var buckets: [UInt64]

    public init(answered: [UInt64], faults: [UInt64], buckets: [UInt64]) {
        self.answered = answered
        self.faults = faults
        self.buckets = buckets
    }

    /// What happened between `earlier` and this sample. A worker started
    /// since begins its counters at 0: then this sample alone is the window.
    public func since(_ earlier: HealthSample) -> HealthSample {
        func minus(_ a: [UInt64], _ b: [UInt64]) -> [UInt64]? {
            guard a.count == b.count, zip(a, b).allSatisfy({ $0 >= $1 }) else { return nil }
            return zip(a, b).map { $0 - $1 }
        }
        guard let answered = minus(answered, earlier.answered), let faults = minus(faults, earlier.faults),
              let buckets = minus(buckets, earlier.buckets) else { return self }
        return HealthSample(answered: answered, faults: faults, buckets: buckets)
    }

    public var totalAnswered: UInt64 { answered.reduce(0, &+) }

    /// The 99th percentile latency, in µs (the upper bound of its bucket).
    public var p99Micros: UInt64 {
        let total = buckets.reduce(0, &+)
        guard total > 0 else { return 0 }
        let rank = UInt64((Double(total) * 0.99).rounded(.up))
        var seen: UInt64 = 0
        for (b, n) in buckets.enumerated() {
            seen &+= n
            if seen >= rank { return UInt64(1) << UInt64(b + 1) }
        }
        return UInt64(1) << UInt64(buckets.count)
    }

    /// The share of operation `operation`'s replies that were faults.
    public func faultRate(_ operation: Int) -> Double {
        guard operation < answered.count, answered[operation] > 0 else { return 0 }
        return Double(faults[operation]) / Double(answered[operation])
    }
}

/// A worker's messages: its answer when started, and one reply a request.
public enum WorkerReply: Codable, Sendable {
    /// Serving: what INIT agreed (nil when the kernel never sent INIT).
    case started(initRequest: [UInt8]?, writebackCache: Bool?, version: String)
    /// The worker could not start serving; it exits after saying why.
    case failed(String)
    case status(MountStatus)
    case upgraded(UpgradeReport)
    /// The size of the state written, or nil: the next process recovers.
    case handedOver(stateBytes: Int?)
    case health(HealthSample)
}

/// A request or reply with the number that pairs them: the worker answers
/// each request on a thread of its own, so a status is not held up by an
/// upgrade. `started` and `failed` carry 0.
public struct WorkerMessage<Body: Codable & Sendable>: Codable, Sendable {
    public var id: UInt64
    public var body: Body
    public init(id: UInt64, _ body: Body) { self.id = id; self.body = body }
}

/// A SOCK_SEQPACKET channel carrying one JSON message per packet.
public final class WorkerChannel: @unchecked Sendable {
    public let fd: Int32
    public static let maxMessage = 1 << 20

    public init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }

    /// A connected pair, close-on-exec: one end for each side.
    public static func pair() throws -> (WorkerChannel, WorkerChannel) {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw ChannelError("socketpair: \(String(cString: strerror(errno)))")
        }
        return (WorkerChannel(fd: fds[0]), WorkerChannel(fd: fds[1]))
    }

    public struct ChannelError: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    public func send(_ message: some Encodable) throws {
        let data = try JSONEncoder().encode(message)
        let sent = data.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == data.count else {
            throw ChannelError(sent < 0 ? "send: \(String(cString: strerror(errno)))" : "send: short")
        }
    }

    /// The next message; waits at most `timeout` seconds (forever if nil).
    /// Throws on a closed channel (the other side is gone) or a timeout.
    public func receive<T: Decodable>(_ type: T.Type, timeout: Double? = nil) throws -> T {
        if let timeout {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            var ready: Int32
            repeat { ready = poll(&poller, 1, Int32(timeout * 1000)) } while ready < 0 && errno == EINTR
            guard ready > 0 else { throw ChannelError("no answer within \(timeout) s") }
        }
        var buffer = [UInt8](repeating: 0, count: Self.maxMessage)
        var n: Int
        repeat { n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } } while n < 0 && errno == EINTR
        guard n > 0 else { throw ChannelError(n == 0 ? "the other side closed the channel" : "recv: \(String(cString: strerror(errno)))") }
        return try JSONDecoder().decode(T.self, from: Data(buffer[0..<n]))
    }
}
