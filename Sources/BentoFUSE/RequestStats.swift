import Glibc
import Atomics

/// The FUSE requests a server answers, as counted.
public enum Operation: Int, CaseIterable, Sendable {
    case lookup, forget, getattr, setattr, readlink, mknod, mkdir, unlink, rmdir, symlink, rename, link
    case open, read, write, release, fsync, opendir, readdir, readdirplus, releasedir, fsyncdir
    case statfs, access, create, getxattr, listxattr
    // Added later, after the others: a number never changes its operation.
    case setxattr, removexattr, fallocate, lseek
}

/// Counts and times the requests a server answers: per operation counts and
/// a latency histogram over all of them, updated without locks.
public final class RequestStats: Sendable {
    /// The operations counted, by name.
    public static let operations = Operation.allCases.map { "\($0)" }

    private let counts: [ManagedAtomic<UInt64>]
    /// Bucket b holds latencies in [2^b, 2^(b+1)) microseconds (bucket 0: below 2 µs).
    private let buckets: [ManagedAtomic<UInt64>]
    private let slowest = ManagedAtomic<UInt64>(0)
    private let retries = ManagedAtomic<UInt64>(0)
    /// Fault replies (faultErrors) by operation.
    private let faults: [ManagedAtomic<UInt64>]
    public let started: Timespec

    public struct Timespec: Sendable { public let seconds: Double }

    public init() {
        counts = (0..<Self.operations.count).map { _ in ManagedAtomic(0) }
        faults = (0..<Self.operations.count).map { _ in ManagedAtomic(0) }
        buckets = (0..<40).map { _ in ManagedAtomic(0) }
        started = Timespec(seconds: Self.now())
    }

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    @inline(__always)
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Records one answered request of operation number `operation`.
    @inline(__always)
    func record(_ operation: Int, nanoseconds: UInt64) {
        counts[operation].wrappingIncrement(ordering: .relaxed)
        let micros = nanoseconds / 1000
        let bucket = micros < 2 ? 0 : min(buckets.count - 1, 63 - micros.leadingZeroBitCount)
        buckets[bucket].wrappingIncrement(ordering: .relaxed)
        var seen = slowest.load(ordering: .relaxed)
        while micros > seen {
            let (exchanged, current) = slowest.compareExchange(expected: seen, desired: micros, ordering: .relaxed)
            if exchanged { break }
            seen = current
        }
    }

    /// Errors that say the file system failed, not the request: what the
    /// health gate compares across an upgrade.
    /// Not ENOSPC: a full disk is no fault of the module's.
    public static let faultErrors: Set<Int32> = [EIO, EUCLEAN, EROFS, ENOMEM, EFAULT, ENOTRECOVERABLE, EOVERFLOW]

    /// Counts one reply to `operation` with `error`, if it is a fault error.
    @inline(__always)
    func countError(_ operation: Int, _ error: Int32) {
        if Self.faultErrors.contains(error) { faults[operation].wrappingIncrement(ordering: .relaxed) }
    }

    /// Requests answered so far, by operation number (Operation).
    public var answeredByOperation: [UInt64] { counts.map { $0.load(ordering: .relaxed) } }
    /// Replies with a fault error so far, by operation number.
    public var faultsByOperation: [UInt64] { faults.map { $0.load(ordering: .relaxed) } }

    /// The latency histogram: bucket b counts requests of [2^b, 2^(b+1)) µs.
    public var latencyBuckets: [UInt64] { buckets.map { $0.load(ordering: .relaxed) } }

    /// Counts a resent request answered as already done (Resend.swift).
    func countResendRetry() { retries.wrappingIncrement(ordering: .relaxed) }

    /// Resent requests whose first attempt had already taken effect.
    public var resendRetries: UInt64 { retries.load(ordering: .relaxed) }

    /// Requests answered so far, of every operation.
    public var answered: UInt64 { counts.reduce(0) { $0 &+ $1.load(ordering: .relaxed) } }

    public var uptimeSeconds: Double { Self.now() - started.seconds }

    /// Counts by operation name, leaving out those never seen.
    public var operationCounts: [String: UInt64] {
        var result: [String: UInt64] = [:]
        for (i, name) in Self.operations.enumerated() {
            let n = counts[i].load(ordering: .relaxed)
            if n > 0 { result[name] = n }
        }
        return result
    }

    /// Latency percentiles in microseconds: each the upper bound of the
    /// histogram bucket it falls in (so within a factor of two), and the
    /// exact slowest request.
    public var latencyMicros: (p50: UInt64, p90: UInt64, p99: UInt64, max: UInt64) {
        let values = buckets.map { $0.load(ordering: .relaxed) }
        let total = values.reduce(0, +)
        func percentile(_ p: Double) -> UInt64 {
            guard total > 0 else { return 0 }
            let rank = UInt64((Double(total) * p).rounded(.up))
            var seen: UInt64 = 0
            for (b, n) in values.enumerated() {
                seen += n
                if seen >= rank { return UInt64(1) << UInt64(b + 1) }
            }
            return UInt64(1) << UInt64(values.count)
        }
        let slowest = slowest.load(ordering: .relaxed)
        return (min(percentile(0.5), slowest), min(percentile(0.9), slowest), min(percentile(0.99), slowest), slowest)
    }
}
