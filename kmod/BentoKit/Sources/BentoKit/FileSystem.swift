/// The file operations API: what a mounted module instance answers. It is
/// shaped after the FUSE low-level operations. Every call gets borrowed
/// values only; buffers passed in are valid for the call alone. Errors are
/// errno values (`Errno`). Calls may arrive on several threads at once.
public protocol FileSystem: AnyObject {
    /// Called once before any other operation on a fresh mount.
    func initialize() throws
    /// Called once at unmount: make everything durable. No call follows.
    func destroy() throws
    /// Commits what is pending without waiting for an fsync; the host calls
    /// it now and then so that an idle file system does not hold changes in
    /// memory for long.
    func sync() throws

    func lookup(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws -> Entry
    /// The kernel dropped `count` references gained by lookup-like answers.
    func forget(ino: InodeNumber, count: UInt64)
    func getattr(_ ctx: RequestContext, ino: InodeNumber) throws -> FileAttributes
    func setattr(_ ctx: RequestContext, ino: InodeNumber, _ changes: SetAttributes,
                 handle: FileHandle?) throws -> FileAttributes
    func readlink(_ ctx: RequestContext, ino: InodeNumber) throws -> [UInt8]
    func mknod(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
               rdev: UInt32) throws -> Entry
    func mkdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32) throws -> Entry
    func unlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws
    func rmdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws
    func symlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName, target: [UInt8]) throws -> Entry
    func rename(_ ctx: RequestContext, parent: InodeNumber, name: FileName, newParent: InodeNumber,
                newName: FileName, flags: RenameFlags) throws
    func link(_ ctx: RequestContext, ino: InodeNumber, newParent: InodeNumber, newName: FileName) throws -> Entry

    func open(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> OpenReply
    /// Reads up to `buffer.count` bytes at `offset`; returns how many were read
    /// (fewer only at end of file).
    func read(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
              into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// Writes all of `data` at `offset`; returns the count written.
    func write(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
               data: UnsafeRawBufferPointer) throws -> Int
    /// The last close of a handle. (There is no flush, sent on every
    /// close(2): the kernel stops sending it, Docs/caching.md.)
    func release(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle) throws
    /// Returns once the file's data and metadata are durable.
    func fsync(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, dataOnly: Bool) throws

    func opendir(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> FileHandle
    /// Hands entries after `offset` (0: from the start) to `emit` until it
    /// returns false (the reply is full) or the directory ends. With `plus`,
    /// each entry carries its attributes, and each one `emit` accepted (other
    /// than "." and "..") counts one lookup reference. `emit` must not call
    /// back into the file system.
    func readdir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64, plus: Bool,
                 _ emit: (DirectoryEntry) -> Bool) throws
    func releasedir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle) throws
    func fsyncdir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, dataOnly: Bool) throws

    func statfs(_ ctx: RequestContext, ino: InodeNumber) throws -> FileSystemStats
    func create(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
                flags: Int32) throws -> (Entry, OpenReply)
    func access(_ ctx: RequestContext, ino: InodeNumber, mask: Int32) throws
    func getxattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName) throws -> [UInt8]
    func listxattr(_ ctx: RequestContext, ino: InodeNumber) throws -> [FileName]
    /// Sets attribute `name` to `value`. `flags`: XATTR_CREATE (1) fails with
    /// EEXIST if it exists, XATTR_REPLACE (2) with ENODATA if it does not.
    func setxattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName, value: UnsafeRawBufferPointer,
                  flags: Int32) throws
    func removexattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName) throws
    /// fallocate(2): `mode` as Linux has it (FALLOC_FL_KEEP_SIZE, ...).
    func fallocate(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, mode: Int32, offset: UInt64,
                   length: UInt64) throws
    /// lseek(2) for SEEK_DATA (3) and SEEK_HOLE (4): the offset found. The
    /// kernel answers the other whences itself.
    func seek(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64, whence: Int32) throws -> UInt64

    /// The upgrade API: the instance's in-memory state in `format`, one of
    /// the formats its descriptor lists as exportable. Called with no other
    /// call in flight; the instance is not used again unless the upgrade
    /// rolls back, in which case calls simply resume.
    func exportState(format: StateFormat) throws -> ExportedState
}

extension FileSystem {
    public func getxattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName) throws -> [UInt8] {
        throw Errno.ENODATA
    }
    public func listxattr(_ ctx: RequestContext, ino: InodeNumber) throws -> [FileName] { [] }

    // Requirements added later, each with a default: modules built before
    // them load unchanged (resilient protocol), and the SDK ABI stays.

    public func setxattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName, value: UnsafeRawBufferPointer,
                         flags: Int32) throws {
        throw Errno.EOPNOTSUPP
    }
    public func removexattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName) throws {
        throw Errno.EOPNOTSUPP
    }
    public func fallocate(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, mode: Int32, offset: UInt64,
                          length: UInt64) throws {
        throw Errno.EOPNOTSUPP
    }
    /// ENOSYS: the kernel then answers lseek itself (all data, one hole at
    /// the end) and stops asking.
    public func seek(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
                     whence: Int32) throws -> UInt64 {
        throw Errno.ENOSYS
    }
}
