import BentoKit
import BentoServices
import Glibc

/// Failures that recur on every request while a condition lasts (a full
/// disk, a failing device, a damaged object), logged as one entry per
/// condition rather than one per request: the first occurrence at once,
/// then one summary per interval with the count, and an entry when an
/// interval passes without any. A log line per request would bury what
/// else the daemon has to say, and journald, rate-limiting the flood,
/// would drop that too.
///
/// `note` is called on request threads: it takes a lock, counts, and
/// writes an entry only for the first occurrence; no allocation. `tick`,
/// from a thread of its own, writes the summaries and the all-clears that
/// are due.
public final class PressureLog: @unchecked Sendable {
    /// What failed and with which error: one condition, counted apart.
    public struct Condition: Hashable, Sendable, CustomStringConvertible {
        /// What did not happen, the same words every time: "requests
        /// failed", "provenance not recorded".
        public let what: StaticString
        public let errno: Int32

        public init(_ what: StaticString, _ errno: Int32) {
            self.what = what
            self.errno = errno
        }

        /// The errno's name ("ENOSPC").
        public var error: String { PressureLog.name(of: errno) }
        public var description: String { "\(what) (\(error))" }

        // By the bytes of `what`: no allocation on the request path.
        public static func == (a: Condition, b: Condition) -> Bool {
            a.errno == b.errno && a.what.withUTF8Buffer { x in b.what.withUTF8Buffer { y in x.elementsEqual(y) } }
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(errno)
            what.withUTF8Buffer { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        }
    }

    /// Requests answered with an error (FuseServer.handle), for the errors
    /// that say something is wrong with the disk, not the request.
    public static func failedRequests(_ errno: Int32) -> Condition? {
        switch errno {
        case ENOSPC, EIO, EUCLEAN: Condition("requests failed", errno)
        default: nil
        }
    }
    /// Resent requests never run again (EIO): each crashed or hung a worker.
    public static let quarantined = Condition("quarantined requests answered", EIO)
    /// Resent requests whose first attempt had taken effect, answered as
    /// done though this attempt failed with `errno` (Resend.swift).
    public static func resendRetried(_ errno: Int32) -> Condition { Condition("resent requests found already done", errno) }

    /// One journal entry.
    public struct Entry: Equatable, Sendable, CustomStringConvertible {
        public enum Kind: String, Sendable {
            /// The first occurrence (after none for an interval, or ever).
            case began
            /// The occurrences since the entry before.
            case summary
            /// An interval passed without any.
            case cleared
        }
        public let kind: Kind
        public let condition: Condition
        /// began: 1; summary: occurrences since the entry before; cleared: 0.
        public let count: UInt64
        /// summary: the seconds its count covers; cleared: since it began.
        public let seconds: Double
        /// Occurrences since the condition began.
        public let total: UInt64
        /// began: which one it was (the operation, the request, the error's
        /// own words), if known.
        public let detail: String
        /// The interval between summaries.
        public let interval: Double

        public var description: String {
            switch kind {
            case .began:
                "\(condition)\(detail.isEmpty ? "" : ", first: " + detail); more are counted, "
                    + "with a summary every \(PressureLog.seconds(interval)) while they go on"
            case .summary:
                "\(condition): \(count) in the last \(PressureLog.seconds(seconds)), \(total) since it began"
            case .cleared:
                "\(condition): cleared, none for \(PressureLog.seconds(interval)); \(total) in all "
                    + "over \(PressureLog.seconds(seconds))"
            }
        }
    }

    /// One condition as `bentoctl status` shows it.
    public struct Count: Equatable, Sendable {
        public let condition: Condition
        /// Occurrences since the mount's process started serving.
        public let total: UInt64
        public let lastSecondsAgo: Double
        /// Not cleared yet.
        public let active: Bool
    }

    private struct Tally {
        var total: UInt64 = 0
        var active = false
        var began = 0.0
        /// Since `began`.
        var episode: UInt64 = 0
        /// Since the last entry.
        var pending: UInt64 = 0
        var lastEntry = 0.0
        var lastSeen = 0.0

        /// Counts one occurrence at `now`; true if it begins the condition.
        mutating func count(at now: Double) -> Bool {
            total &+= 1
            lastSeen = now
            guard active else {
                active = true
                began = now
                lastEntry = now
                episode = 1
                pending = 0
                return true
            }
            episode &+= 1
            pending &+= 1
            return false
        }
    }

    /// Seconds between summaries, and without any occurrence before the
    /// all-clear.
    public let interval: Double
    private let clock: @Sendable () -> Double
    private let write: @Sendable (Entry) -> Void
    /// Guarded, not a Mutex: ThreadSanitizer (make test-tsan) does not see
    /// Synchronization.Mutex's futex as a lock.
    private let tallies = Guarded<[Condition: Tally]>([:])

    /// `write` gets each entry; `clock` gives monotonic seconds.
    public init(interval: Double = PressureLog.defaultInterval, clock: @escaping @Sendable () -> Double = { RequestStats.now() },
                write: @escaping @Sendable (Entry) -> Void = { _ in }) {
        self.interval = interval
        self.clock = clock
        self.write = write
    }

    public static let defaultInterval = 60.0

    /// The interval BENTO_PRESSURE_INTERVAL sets (seconds, e.g. "1.5";
    /// for tests), else the default; nil when it is set but not a
    /// positive number.
    public static func intervalFromEnvironment() -> Double? {
        guard let text = getenv("BENTO_PRESSURE_INTERVAL").map({ String(cString: $0) }) else { return defaultInterval }
        guard let seconds = Double(text), seconds > 0, seconds.isFinite else { return nil }
        return seconds
    }

    /// Counts one occurrence; writes the entry if it is the first. Entries
    /// are written under the lock, so that the log has them in the order
    /// they were decided: an all-clear before the next first occurrence.
    public func note(_ condition: Condition, detail: @autoclosure () -> String = "") {
        let now = clock()
        tallies.withLock { tallies in
            guard tallies[condition, default: Tally()].count(at: now) else { return }
            write(Entry(kind: .began, condition: condition, count: 1, seconds: 0, total: 1, detail: detail(),
                        interval: interval))
        }
    }

    /// Writes the summaries and all-clears that are due: a summary once an
    /// interval has passed since a condition's last entry, if it recurred
    /// since; an all-clear once an interval has passed without it.
    public func tick() { summarize(now: clock(), all: false) }

    /// Writes a summary of what was counted since each condition's last
    /// entry, due or not: for the end (the mount goes away).
    public func flush() { summarize(now: clock(), all: true) }

    private func summarize(now: Double, all: Bool) {
        tallies.withLock { tallies in
            for condition in tallies.keys.sorted(by: { "\($0)" < "\($1)" }) {
                guard var tally = tallies[condition], tally.active else { continue }
                if tally.pending > 0, all || now - tally.lastEntry >= interval {
                    write(Entry(kind: .summary, condition: condition, count: tally.pending, seconds: now - tally.lastEntry,
                                total: tally.episode, detail: "", interval: interval))
                    tally.pending = 0
                    tally.lastEntry = now
                } else if !all, tally.pending == 0, now - tally.lastSeen >= interval {
                    write(Entry(kind: .cleared, condition: condition, count: 0, seconds: now - tally.began,
                                total: tally.episode, detail: "", interval: interval))
                    tally.active = false
                }
                tallies[condition] = tally
            }
        }
    }

    /// Every condition seen so far, by name.
    public var counts: [Count] {
        let now = clock()
        return tallies.withLock { tallies in
            tallies.map { Count(condition: $0.key, total: $0.value.total, lastSecondsAgo: now - $0.value.lastSeen,
                                active: $0.value.active) }
        }.sorted { "\($0.condition)" < "\($1.condition)" }
    }

    /// How often the summarizing thread should call `tick`: a summary or
    /// an all-clear is late by at most this.
    public var tickInterval: Double { min(1, interval / 4) }

    /// "ENOSPC", or "errno 1234" for a number without a name.
    static func name(of errno: Int32) -> String { "\(Errno(errno))" }

    /// "60 s", "1.5 s".
    static func seconds(_ value: Double) -> String {
        if value >= 9.95 { return "\(Int(value.rounded())) s" }
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) s"
    }
}

