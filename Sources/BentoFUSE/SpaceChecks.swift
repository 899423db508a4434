import BentoKit
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
        for ino in space.looked(free: free) { notifyKernel(ino, flushingPages: false) }
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
        notifyKernel(ino, flushingPages: true)
        for other in space.writerInodes where other != ino { notifyKernel(other, flushingPages: true) }
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
        for ino in space.writerInodes { notifyKernel(ino, flushingPages: true) }
    }

    /// FUSE_NOTIFY_INVAL_INODE: the kernel drops the file's cached
    /// attributes and, with `flushingPages`, writes its dirty pages back
    /// (waiting for the WRITEs) and drops its cached pages.
    func notifyKernel(_ ino: UInt64, flushingPages: Bool) {
        guard let session else { return }
        _ = fuse_lowlevel_notify_inval_inode(session, ino, flushingPages ? 0 : -1, 0)
    }

    /// Whether open flags give write access.
    static func writes(_ fi: UnsafeMutablePointer<fuse_file_info>?) -> Bool {
        (fi?.pointee.flags ?? 0) & O_ACCMODE != O_RDONLY
    }
}
