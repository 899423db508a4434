import BentoKit
import Glibc

/// Appends records to /.provenance, a regular file of the lower file
/// system (root's, mode 0600), through the lower file system's own
/// operations: one record at a time, each whole or not at all.
final class Recorder: @unchecked Sendable {
    static let fileName = FileName(".provenance")
    static let root: InodeNumber = 1

    private let superBlock: SuperBlock
    private let lower: LowerFileSystem
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// The file's inode, as last found: operations on it are not recorded.
    private(set) var fileIno: InodeNumber?
    /// Operations not recorded since the last record that was.
    private(set) var gap: Gap?
    private var executables = Executables()

    init(_ superBlock: SuperBlock, over lower: LowerFileSystem, fileIno: InodeNumber?, gap: Gap?) {
        self.superBlock = superBlock
        self.lower = lower
        self.fileIno = fileIno
        self.gap = gap
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Records `operation`, made by `ctx`. A record that cannot be written
    /// never fails the operation: it is counted in the gap and reported to
    /// the host (logged when such failures begin, then counted).
    func record(_ ctx: RequestContext, _ operation: Operation) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if let own = fileIno, operation.ino == own { return }
        let time = now()
        let exe = executables.path(of: ctx.pid, now: time)
        let line = "\(stamp(time)) pid=\(ctx.pid) uid=\(ctx.uid) exe=\(quoted(Array(exe.utf8))) \(operation.details)\n"
        do {
            try append(Array(((gap?.line(now: time) ?? "") + line).utf8))
            if let gap {
                superBlock.log("provenance: recorded again; \(gap.operations) operations were not recorded "
                               + "(\(gap.error)), marked in /.provenance as a gap")
            }
            gap = nil
        } catch {
            let errno = error as? Errno ?? .EIO
            superBlock.report("provenance not recorded", errno)
            if gap == nil { gap = Gap(operations: 1, first: time, last: time, error: errno) } else { gap!.add(at: time) }
        }
    }

    /// The file, found or made, open for writing: one lookup reference and
    /// one handle, for the caller to give back.
    private func openFile(_ fs: any FileSystem) throws -> (Entry, FileHandle) {
        let entry: Entry
        do {
            entry = try fs.lookup(.root, parent: Self.root, name: Self.fileName)
        } catch let error as Errno where error == .ENOENT {
            let made = try fs.create(.root, parent: Self.root, name: Self.fileName, mode: FileMode.regular | 0o600,
                                     flags: OpenFlags.writeOnly)
            return (made.0, made.1.handle)
        }
        do {
            guard entry.attributes.mode & FileMode.typeMask == FileMode.regular else { throw Errno.EEXIST }
            return (entry, try fs.open(.root, ino: entry.ino, flags: OpenFlags.writeOnly).handle)
        } catch {
            fs.forget(ino: entry.ino, count: 1)
            throw error
        }
    }

    /// Appends `bytes` to the file, made if missing. Every reference the
    /// lower file system hands out here is given back before returning.
    private func append(_ bytes: [UInt8]) throws {
        let fs = lower.fileSystem
        let (entry, handle) = try openFile(fs)
        fileIno = entry.ino
        defer {
            try? fs.release(.root, ino: entry.ino, handle: handle)
            fs.forget(ino: entry.ino, count: 1)
        }
        // Whole or nothing: the blocks it needs are counted first, with two
        // for indirect tables; a short write is cut back off.
        let stats = try fs.statfs(.root, ino: Self.root)
        let size = UInt64(max(stats.blockSize, 1)), start = entry.attributes.size, end = start + UInt64(bytes.count)
        let fresh = (end - 1) / size + 1 - (start + size - 1) / size
        guard fresh == 0 || stats.freeBlocks >= fresh + 2 else { throw Errno.ENOSPC }
        let written = try bytes.withUnsafeBytes { try fs.write(.root, ino: entry.ino, handle: handle, offset: start, data: $0) }
        if written != bytes.count {
            _ = try? fs.setattr(.root, ino: entry.ino, SetAttributes(size: start), handle: handle)
            throw Errno.ENOSPC
        }
        // The kernel learns of this append from nobody else; with its
        // writeback cache it keeps the size it knows while it holds the
        // inode, so the name goes too (Docs/caching.md).
        superBlock.kernelCache.inodeChanged(entry.ino)
        superBlock.kernelCache.entryChanged(parent: Self.root, name: Self.fileName)
    }
}
