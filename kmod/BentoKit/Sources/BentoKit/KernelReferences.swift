import Glibc

/// What the kernel holds of a mounted file system: its references to inodes
/// (lookup counts, open handles) and the open handles themselves. The host
/// owns the table and lends the same one, through the superblock, to every
/// instance that serves the mount, so an upgrade carries none of it: the
/// new instance finds every handle and count in place, however many there
/// are, and the pause does not grow with them (Docs/upgrade.md).
///
/// A module counts here instead of in its own memory: a lookup-like answer
/// with `lookedUp`, a FORGET with `forgot`, an open with `open`, a release
/// with `close`. Every call is atomic; make each under the module's own
/// lock along with the change it counts, so that no other call sees one
/// without the other.
public final class KernelReferences: @unchecked Sendable {
    /// The kernel's references to one inode.
    public struct Counts: Equatable, Sendable {
        /// Lookup-like answers not forgotten yet.
        public var lookups: UInt64
        /// Open file and directory handles.
        public var opens: UInt64
        public init(lookups: UInt64 = 0, opens: UInt64 = 0) { self.lookups = lookups; self.opens = opens }
        /// The kernel still refers to the inode.
        public var isHeld: Bool { lookups > 0 || opens > 0 }
    }

    /// An open file or directory handle.
    public struct OpenFile: Equatable, Sendable {
        public var ino: InodeNumber
        /// The open(2) flags.
        public var flags: Int32
        public var isDirectory: Bool
        /// Who opened it: with the kernel's writeback cache, writes arrive
        /// from the kernel (pid 0), and the opener is who wrote them.
        public var opener: RequestContext
        public init(ino: InodeNumber, flags: Int32, isDirectory: Bool, opener: RequestContext) {
            self.ino = ino; self.flags = flags; self.isDirectory = isDirectory; self.opener = opener
        }
        public static func == (a: OpenFile, b: OpenFile) -> Bool {
            a.ino == b.ino && a.flags == b.flags && a.isDirectory == b.isDirectory
                && a.opener.uid == b.opener.uid && a.opener.gid == b.opener.gid && a.opener.pid == b.opener.pid
        }
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var counts = IntegerMap<Counts>()
    private var files = IntegerMap<OpenFile>()
    private var nextHandle: FileHandle
    private var copyCount = 0

    /// Handles start at random in a 2^62 range: after the host process dies
    /// the kernel keeps the open files the dead one handed out and releases
    /// them later, and a new handle must not be one of those.
    public init() {
        pthread_mutex_init(mutex, nil)
        nextHandle = FileHandle.random(in: (1 << 32)..<(1 << 62))
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    // MARK: Counting

    /// The kernel got `ino` in a lookup-like answer.
    public func lookedUp(_ ino: InodeNumber) {
        locked { counts[ino, default: Counts()].lookups += 1 }
    }

    /// The kernel forgot `count` lookups of `ino`; returns what it still holds.
    @discardableResult
    public func forgot(_ ino: InodeNumber, count: UInt64) -> Counts {
        locked {
            guard var held = counts[ino] else { return Counts() }
            held.lookups -= min(held.lookups, count)
            counts[ino] = held.isHeld ? held : nil
            return held
        }
    }

    /// What the kernel holds of `ino`.
    public func counts(_ ino: InodeNumber) -> Counts {
        locked { counts[ino] ?? Counts() }
    }

    public func isHeld(_ ino: InodeNumber) -> Bool { counts(ino).isHeld }

    // MARK: Handles

    /// A new handle on `file`, never handed out before on this mount.
    public func open(_ file: OpenFile) -> FileHandle {
        locked {
            let handle = nextHandle
            nextHandle += 1
            files[handle] = file
            counts[file.ino, default: Counts()].opens += 1
            return handle
        }
    }

    public func file(_ handle: FileHandle) -> OpenFile? {
        locked { files[handle] }
    }

    /// Ends `handle`: its file and what the kernel still holds of that
    /// file's inode, or nil for a handle not open.
    public func close(_ handle: FileHandle) -> (OpenFile, Counts)? {
        locked {
            guard let file = files.removeValue(forKey: handle) else { return nil }
            var held = counts[file.ino] ?? Counts()
            held.opens -= min(held.opens, 1)
            counts[file.ino] = held.isHeld ? held : nil
            return (file, held)
        }
    }

    /// Ends every handle on `ino` (the kernel evicted it: their late
    /// releases must not touch a reused inode number); returns how many.
    @discardableResult
    public func closeAll(on ino: InodeNumber) -> Int {
        locked {
            let gone = files.filter { $0.value.ino == ino }.map(\.key)
            for handle in gone { files[handle] = nil }
            if var held = counts[ino] {
                held.opens = 0
                counts[ino] = held.isHeld ? held : nil
            }
            return gone.count
        }
    }

    // MARK: The whole table

    /// How many inodes the kernel holds, and how many handles are open.
    public var size: (inodes: Int, handles: Int) { locked { (counts.count, files.count) } }

    /// Every inode the kernel holds now.
    public var heldInodes: [InodeNumber] { locked { Array(counts.keys) } }

    /// A copy of the whole table: for a state format that carries it to a
    /// version that keeps its own (slow: it grows with the table).
    public func snapshot() -> Snapshot {
        locked {
            copyCount += 1
            return Snapshot(counts: Dictionary(uniqueKeysWithValues: counts.map { ($0.key, $0.value) }),
                            files: Dictionary(uniqueKeysWithValues: files.map { ($0.key, $0.value) }),
                            nextHandle: nextHandle)
        }
    }

    /// Puts `snapshot` in place of everything here: for a state format that
    /// carried the table, and for the host after a restart.
    public func replace(with snapshot: Snapshot) {
        locked {
            copyCount += 1
            counts = IntegerMap(minimumCapacity: snapshot.counts.count)
            for (ino, held) in snapshot.counts where held.isHeld { counts[ino] = held }
            files = IntegerMap(minimumCapacity: snapshot.files.count)
            for (handle, file) in snapshot.files { files[handle] = file }
            nextHandle = max(nextHandle, snapshot.nextHandle)
        }
    }

    /// How often the whole table was copied out or put back: how the host
    /// tells that an upgrade moved it through the state, the slow way.
    public var copies: Int { locked { copyCount } }

    /// The table as plain values.
    public struct Snapshot: Equatable, Sendable {
        public var counts: [InodeNumber: Counts]
        public var files: [FileHandle: OpenFile]
        /// Where new handles start: above every handle given out.
        public var nextHandle: FileHandle
        public init(counts: [InodeNumber: Counts] = [:], files: [FileHandle: OpenFile] = [:], nextHandle: FileHandle = 1) {
            self.counts = counts; self.files = files; self.nextHandle = nextHandle
        }
    }
}
