import BentoKit
import CBentoFlusher
import CFuse3
import Glibc

/// How the server applies its SpaceGuard (see there): looking at free
/// space, having the kernel write a file's dirty pages back, and refusing
/// a write() that would not fit.
extension FuseServer {
    /// How long the kernel may cache attributes: not at all while writes
    /// are checked one by one, so that each write() asks first.
    var attributeTimeout: Double { space?.isLow == true ? 0 : timeout }

    /// Free bytes as the module counts them; tells the guard, and when that
    /// turns checking on, has the kernel drop the attributes of every file
    /// open for writing, so that their next write() asks. Inside the gate.
    func lookAtFreeSpace(_ fs: any FileSystem, _ ctx: RequestContext) throws -> UInt64 {
        let stats = try fs.statfs(ctx, ino: InodeNumber(FUSE_ROOT_ID))
        let free = stats.availableBlocks * UInt64(stats.blockSize)
        guard let space else { return free }
        for ino in space.looked(free: free) { notifyKernel(ino) }
        return free
    }

    /// After a WRITE of `bytes` to `ino` was handled. Inside the gate.
    func noteWrite(_ fs: any FileSystem, _ ctx: RequestContext, ino: UInt64, bytes: Int) {
        guard let space, space.received(ino, bytes: UInt64(bytes)) else { return }
        _ = try? lookAtFreeSpace(fs, ctx)
    }

    /// After space may have been freed (unlink, truncate, a file closed):
    /// look again, so that checking stops at once if there is room.
    func noteSpaceFreed(_ fs: any FileSystem, _ ctx: RequestContext) {
        guard space?.isLow == true else { return }
        _ = try? lookAtFreeSpace(fs, ctx)
    }

    /// Before a GETATTR that names a file handle, while checking: has the
    /// kernel write back the dirty pages of every file open for writing
    /// (this one's last write(), and what others wrote before checking
    /// began), so that free space is counted after them. False when not
    /// checking. When too many flushes run already (each holds a request
    /// thread, and the WRITEs it waits for need others), the check goes by
    /// what the kernel sent by itself. Outside the gate: those WRITEs must
    /// pass it.
    func flushBeforeCheck(_ ino: UInt64) -> Bool {
        guard let space, space.isLow else { return false }
        guard flushesRunning.wrappingAdd(1, ordering: .acquiringAndReleasing).oldValue < maxFlushes else {
            flushesRunning.wrappingSubtract(1, ordering: .releasing)
            return true
        }
        defer { flushesRunning.wrappingSubtract(1, ordering: .releasing) }
        writeBack([ino] + space.writerInodes.filter { $0 != ino })
        return true
    }

    /// Inside the gate, after `flushBeforeCheck`: ENOSPC if the write()
    /// that follows would not fit.
    func checkSpace(_ fs: any FileSystem, _ ctx: RequestContext, ino: UInt64) throws {
        guard let space else { return }
        let free = try lookAtFreeSpace(fs, ctx)
        guard space.isLow else { return }
        if !space.allows(ino, free: free) { throw Errno.ENOSPC }
    }

    /// Before STATFS: writes back every file open for writing, so that
    /// what the kernel holds dirty counts as used. Outside the gate.
    func flushWriters() {
        guard let space else { return }
        writeBack(space.writerInodes)
    }

    /// Has the kernel write the files' dirty pages back (and drop their
    /// cached pages), through the flusher child (CBentoFlusher.h says why
    /// not from here); waits for that, 5 s at most, then goes on without.
    func writeBack(_ inodes: [UInt64]) {
        guard let flusher, !inodes.isEmpty else { return }
        var rest = inodes[...]
        while !rest.isEmpty {
            let batch = Array(rest.prefix(Int(BENTO_FLUSH_BATCH)))
            rest = rest.dropFirst(batch.count)
            let rc = batch.withUnsafeBufferPointer { bento_flusher_flush(flusher, $0.baseAddress, Int32($0.count), 5000) }
            if rc != 0 { return }
        }
    }

    /// FUSE_NOTIFY_INVAL_INODE for the attributes only: the kernel drops
    /// them and asks again (nothing waits).
    func notifyKernel(_ ino: UInt64) {
        guard let session else { return }
        _ = fuse_lowlevel_notify_inval_inode(session, ino, -1, 0)
    }

    /// Whether open flags give write access.
    static func writes(_ fi: UnsafeMutablePointer<fuse_file_info>?) -> Bool {
        (fi?.pointee.flags ?? 0) & O_ACCMODE != O_RDONLY
    }
}
