/// Value types that cross the module boundary. All are plain values: the
/// module gets copies or borrows, never anything it must free.

public typealias InodeNumber = UInt64
public typealias FileHandle = UInt64

/// Who is asking: lent to every call, valid for that call only.
@frozen
public struct RequestContext: Sendable {
    public var uid: UInt32
    public var gid: UInt32
    public var pid: Int32
    @inlinable public init(uid: UInt32, gid: UInt32, pid: Int32) {
        self.uid = uid; self.gid = gid; self.pid = pid
    }
    public static let root = RequestContext(uid: 0, gid: 0, pid: 0)
}

@frozen
public struct Timespec: Equatable, Hashable, Comparable, Sendable {
    public var seconds: Int64
    public var nanoseconds: UInt32
    @inlinable public init(seconds: Int64, nanoseconds: UInt32) {
        self.seconds = seconds; self.nanoseconds = nanoseconds
    }
    public static func < (a: Timespec, b: Timespec) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
}

/// A file name: raw bytes, as Linux keeps them (not necessarily UTF-8).
@frozen
public struct FileName: Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var bytes: [UInt8]
    @inlinable public init(_ bytes: [UInt8]) { self.bytes = bytes }
    @inlinable public init(_ string: String) { self.bytes = Array(string.utf8) }
    @inlinable public init(stringLiteral value: String) { self.init(value) }
    public var description: String { String(decoding: bytes, as: UTF8.self) }
}

/// File type and permission bits, as in st_mode.
public enum FileMode {
    public static let typeMask: UInt32 = 0o170000
    public static let socket: UInt32 = 0o140000
    public static let symlink: UInt32 = 0o120000
    public static let regular: UInt32 = 0o100000
    public static let blockDevice: UInt32 = 0o060000
    public static let directory: UInt32 = 0o040000
    public static let characterDevice: UInt32 = 0o020000
    public static let fifo: UInt32 = 0o010000
    public static let permissionMask: UInt32 = 0o7777
}

/// What stat(2) reports.
@frozen
public struct FileAttributes: Equatable, Sendable {
    public var ino: InodeNumber
    public var size: UInt64
    /// 512-byte units, as st_blocks.
    public var blocks: UInt64
    public var atime: Timespec
    public var mtime: Timespec
    public var ctime: Timespec
    public var mode: UInt32
    public var nlink: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var rdev: UInt32
    public var blockSize: UInt32
    @inlinable public init(ino: InodeNumber, size: UInt64, blocks: UInt64, atime: Timespec,
                           mtime: Timespec, ctime: Timespec, mode: UInt32, nlink: UInt32,
                           uid: UInt32, gid: UInt32, rdev: UInt32, blockSize: UInt32) {
        self.ino = ino; self.size = size; self.blocks = blocks
        self.atime = atime; self.mtime = mtime; self.ctime = ctime
        self.mode = mode; self.nlink = nlink; self.uid = uid; self.gid = gid
        self.rdev = rdev; self.blockSize = blockSize
    }
}

/// The answer to lookup, mknod, mkdir, symlink, link and create. Each such
/// answer counts one kernel reference to the inode, returned by `forget`.
@frozen
public struct Entry: Equatable, Sendable {
    public var attributes: FileAttributes
    public var generation: UInt64
    @inlinable public init(attributes: FileAttributes, generation: UInt64) {
        self.attributes = attributes; self.generation = generation
    }
    @inlinable public var ino: InodeNumber { attributes.ino }
}

/// What setattr changes; nil fields stay as they are.
@frozen
public struct SetAttributes: Sendable {
    @frozen public enum Time: Equatable, Sendable { case now, at(Timespec) }
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: Time?
    public var mtime: Time?
    public var ctime: Timespec?
    @inlinable public init(mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil,
                           size: UInt64? = nil, atime: Time? = nil, mtime: Time? = nil,
                           ctime: Timespec? = nil) {
        self.mode = mode; self.uid = uid; self.gid = gid; self.size = size
        self.atime = atime; self.mtime = mtime; self.ctime = ctime
    }
}

/// The answer to open and create.
@frozen
public struct OpenReply: Equatable, Sendable {
    public var handle: FileHandle
    /// The kernel may keep its page cache of the file across this open.
    public var keepCache: Bool
    @inlinable public init(handle: FileHandle, keepCache: Bool = true) {
        self.handle = handle; self.keepCache = keepCache
    }
}

/// One directory entry handed out by readdir. `nextOffset` is the cookie that
/// resumes the listing after this entry; it stays valid while the directory
/// changes (entries added or removed meanwhile may or may not show up).
@frozen
public struct DirectoryEntry: Sendable {
    public var ino: InodeNumber
    public var nextOffset: UInt64
    /// File type bits (FileMode.directory, ...).
    public var type: UInt32
    public var name: FileName
    /// Set for readdirplus: the entry as lookup would answer it.
    public var entry: Entry?
    @inlinable public init(ino: InodeNumber, nextOffset: UInt64, type: UInt32, name: FileName,
                           entry: Entry? = nil) {
        self.ino = ino; self.nextOffset = nextOffset; self.type = type; self.name = name
        self.entry = entry
    }
}

/// What statfs(2) reports.
@frozen
public struct FileSystemStats: Equatable, Sendable {
    public var blockSize: UInt32
    public var blocks: UInt64
    public var freeBlocks: UInt64
    public var availableBlocks: UInt64
    public var files: UInt64
    public var freeFiles: UInt64
    public var nameMax: UInt32
    @inlinable public init(blockSize: UInt32, blocks: UInt64, freeBlocks: UInt64,
                           availableBlocks: UInt64, files: UInt64, freeFiles: UInt64, nameMax: UInt32) {
        self.blockSize = blockSize; self.blocks = blocks; self.freeBlocks = freeBlocks
        self.availableBlocks = availableBlocks; self.files = files; self.freeFiles = freeFiles
        self.nameMax = nameMax
    }
}

/// rename(2) flags.
@frozen
public struct RenameFlags: OptionSet, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let noReplace = RenameFlags(rawValue: 1)
    public static let exchange = RenameFlags(rawValue: 2)
}

/// open(2) flags the file systems care about (Linux values).
public enum OpenFlags {
    public static let accessMask: Int32 = 0o3
    public static let readOnly: Int32 = 0
    public static let writeOnly: Int32 = 1
    public static let readWrite: Int32 = 2
    public static let truncate: Int32 = 0o1000
    public static let append: Int32 = 0o2000
}

/// access(2) mask bits.
public enum AccessMask {
    public static let exists: Int32 = 0
    public static let execute: Int32 = 1
    public static let write: Int32 = 2
    public static let read: Int32 = 4
}
