import BentoServices
import Glibc
import Synchronization

/// Keeps writes through the kernel's writeback cache from outrunning the
/// disk. With that cache, write() only fills the page cache; the module
/// hears of the data at writeback, when a full disk can be told to no one
/// but a later fsync or close. So:
/// - While free space is above `reserve` (all the kernel may hold dirty for
///   this mount, Docs/enospc.md), everything the kernel accepted fits.
/// - Below it ("low"), attributes are answered uncacheable, so the kernel
///   asks for them (GETATTR with the file handle) before every write(). The
///   server first has the kernel write back the mount's dirty pages, then
///   asks here whether the write that follows may go on: ENOSPC if not.
/// The policy is here; FuseServer does the asking and the notifications.
public final class SpaceGuard: @unchecked Sendable {
    /// Free bytes under which writes are checked one by one.
    public let reserve: UInt64
    /// The most one write() is assumed to need (the kernel's largest WRITE).
    static let largestWrite: UInt64 = 1 << 20
    /// Room kept beside the writes a check counts, for the blocks a module
    /// adds now and then: an indirect table, a directory block, a record.
    static let slack: UInt64 = 64 << 10

    struct Writer {
        /// Handles open for writing, as far as this process saw them open.
        var handles = 0
        /// Bytes of WRITE requests received, and at the last check: between
        /// two checks comes one write(), whether its pages came back by a
        /// check's write-back or by the kernel's own.
        var bytesReceived: UInt64 = 0
        var receivedAtCheck: UInt64 = 0
        /// What the file's last write() held (what it sent between checks).
        var lastWrite: UInt64 = 0
        /// Its last write() was refused for want of space.
        var refused = false
        /// What it may write before it is checked again: as much as its last
        /// write, or as it sent since its last check (its first, unchecked).
        var pending: UInt64 { max(lastWrite, min(bytesReceived &- receivedAtCheck, SpaceGuard.largestWrite)) }
    }
    struct State {
        /// Free bytes at the last look (0: not looked yet).
        var free: UInt64 = 0
        /// Bytes written since then.
        var sinceLook: UInt64 = 0
        var writers: [UInt64: Writer] = [:]
        var looked = false
        /// Free space used per byte written, as last seen (at least 1): a
        /// module may store more than the data (xv6fs 2 records each write).
        /// Falls back slowly, so that a burst is remembered a while.
        var overhead = 1.0
    }
    /// Guarded, not a Mutex: ThreadSanitizer sees pthread locks, and
    /// WRITEs come in on many threads at once.
    private let state = Guarded(State())
    /// Checking until free space was looked at (the server does at once).
    private let lowSpace = Atomic<Bool>(true)

    public init(reserve: UInt64) {
        self.reserve = reserve
    }

    /// Whether writes are being checked one by one.
    public var isLow: Bool { lowSpace.load(ordering: .acquiring) }

    /// A handle open for writing on `ino`.
    public func opened(_ ino: UInt64) { state.withLock { $0.writers[ino, default: Writer()].handles += 1 } }

    /// A handle open for writing on `ino` was released.
    public func released(_ ino: UInt64) {
        state.withLock {
            guard var writer = $0.writers[ino] else { return }
            writer.handles -= 1
            $0.writers[ino] = writer.handles > 0 ? writer : nil
        }
    }

    /// Whether `ino` is open for writing (or was written through a handle
    /// opened before this process).
    public func isWriter(_ ino: UInt64) -> Bool { state.withLock { $0.writers[ino] != nil } }

    /// Files open for writing (their dirty pages are all the kernel holds:
    /// closing a file writes its pages back).
    public var writerInodes: [UInt64] { state.withLock { Array($0.writers.keys) } }

    /// Counts a WRITE request; true when free space should be looked at
    /// again (half the room above the reserve may be gone).
    public func received(_ ino: UInt64, bytes: UInt64) -> Bool {
        state.withLock {
            // A file written through a handle opened before this process
            // started is known from its first WRITE on (its release ends it).
            $0.writers[ino, default: Writer()].bytesReceived &+= bytes
            $0.sinceLook &+= bytes
            let room = $0.free > reserve ? $0.free - reserve : 0
            return $0.sinceLook * 2 >= room || isLow
        }
    }

    /// Free space as the module counts it now. Returns the files to ask
    /// again for attributes when this turns checking on.
    public func looked(free: UInt64) -> [UInt64] {
        state.withLock {
            if $0.looked, $0.sinceLook >= 4096, free < $0.free {
                let seen = Double($0.free - free) / Double($0.sinceLook)
                $0.overhead = min(4, max(1, seen, $0.overhead * 0.99))
            }
            $0.free = free
            $0.sinceLook = 0
            let wasLow = isLow && $0.looked
            $0.looked = true
            // A little above the reserve before checking stops, so that a
            // disk near the line does not flip at every write.
            let low = wasLow ? free < reserve + reserve / 16 : free < reserve
            lowSpace.store(low, ordering: .releasing)
            guard low, !wasLow else { return [] }
            return Array($0.writers.keys)
        }
    }

    /// Whether the write() about to follow on `ino` may go on, with `free`
    /// bytes free once the kernel's dirty pages were written back (when
    /// not, `dirtyKnown` is false, and all it may hold counts). A file
    /// that sent nothing since its last check is not writing, or writes for
    /// the first time: it goes on (reads and seeks ask too) unless its last
    /// write was refused. Otherwise its next write is taken to be as large
    /// as its last, and must fit beside the last writes of every other file
    /// being written.
    public func allows(_ ino: UInt64, free: UInt64, dirtyKnown: Bool = true) -> Bool {
        state.withLock { state in
            guard var writer = state.writers[ino] else { return true }
            defer { state.writers[ino] = writer }
            let sent = writer.bytesReceived &- writer.receivedAtCheck
            writer.receivedAtCheck = writer.bytesReceived
            if sent > 0 {
                writer.lastWrite = min(sent, Self.largestWrite)
            } else if !writer.refused {
                writer.lastWrite = 0
            }
            guard writer.lastWrite > 0 else { return true }
            let others = state.writers.reduce(UInt64(0)) { $0 + ($1.key == ino ? 0 : $1.value.pending) }
            let need = UInt64(Double(others + writer.lastWrite) * state.overhead) + Self.slack + (dirtyKnown ? 0 : reserve)
            writer.refused = free < need
            return !writer.refused
        }
    }
}
