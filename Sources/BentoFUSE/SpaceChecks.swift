import BentoKit
import CBentoFlusher
import CFuse3
import Glibc

/// How the server applies its SpaceGuard (see there): looking at free
/// space, having the kernel write the mount's dirty pages back, and
/// refusing a write() that would not fit.
extension FuseServer {
    /// How long the kernel may cache a file's attributes: not at all for a
    /// file open for writing while writes are checked one by one, so that
    /// each write() asks first. Others keep them cached as always.
    func attributeTimeout(_ ino: UInt64) -> Double {
        guard let space, space.isLow, space.isWriter(ino) else { return timeout }
        return 0
    }

    /// Free bytes as the module counts them, once the FORGETs kept have
    /// freed what they free; tells the guard, and when that turns checking
    /// on, has the kernel drop the attributes of every file open for
    /// writing, so that their next write() asks. Inside the gate.
    func lookAtFreeSpace(_ fs: any FileSystem, _ ctx: RequestContext) throws -> UInt64 {
        runKeptForgets(on: fs)
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
    /// (this file's last write(), and what others wrote before checking
    /// began), so that free space is counted after them. Nil when not checking. When half the
    /// request threads wait for write-backs already (the WRITEs they wait
    /// for need the others), goes on without one: the check then counts
    /// what the kernel sent by itself. Outside the gate: those WRITEs must
    /// pass it.
    func writeBackBeforeCheck(_ ino: UInt64) -> WriteBack? {
        guard let space, space.isLow else { return nil }
        guard flushesRunning.wrappingAdd(1, ordering: .acquiringAndReleasing).oldValue < maxFlushes else {
            flushesRunning.wrappingSubtract(1, ordering: .releasing)
            return .skipped
        }
        defer { flushesRunning.wrappingSubtract(1, ordering: .releasing) }
        return writeBack([ino] + space.writerInodes.filter { $0 != ino }) ? .done : .failed
    }

    enum WriteBack { case done, skipped, failed }

    /// Inside the gate, after `writeBackBeforeCheck`: ENOSPC if the write()
    /// that follows would not fit.
    func checkSpace(_ fs: any FileSystem, _ ctx: RequestContext, ino: UInt64, _ writeBack: WriteBack) throws {
        guard let space else { return }
        let free = try lookAtFreeSpace(fs, ctx)
        guard space.isLow else { return }
        if !space.allows(ino, free: free, dirtyKnown: writeBack != .failed) { throw Errno.ENOSPC }
    }

    /// Before STATFS: has the kernel write back what it holds dirty, so
    /// that df counts it as used. Outside the gate.
    func flushWriters() {
        guard let space else { return }
        _ = writeBack(space.writerInodes)
    }

    /// Has the kernel write the files' dirty pages back (and drop their
    /// cached pages) through the flusher child (CBentoFlusher.h says why
    /// not from here); waits for that 10 s at most. False if it did not
    /// happen.
    func writeBack(_ inodes: [UInt64]) -> Bool {
        guard let flusher else { return false }
        waiter.handOff()  // the WRITEs it waits for need a reader
        var rest = inodes[...]
        while !rest.isEmpty {
            let batch = Array(rest.prefix(Int(BENTO_FLUSH_BATCH)))
            rest = rest.dropFirst(batch.count)
            let rc = batch.withUnsafeBufferPointer { bento_flusher_flush(flusher, $0.baseAddress, Int32($0.count), 10_000) }
            guard rc == 0 else { return false }
        }
        return true
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
