import BentoKit
import Glibc

/// Linux drops a file's set-user-ID bit, and its set-group-ID bit when the
/// group may execute it, when the file is chowned, and when someone
/// without CAP_FSETID writes or truncates it. Left to the kernel, a FUSE
/// chown costs a GETATTR first (to see the bits) and then the SETATTR: tar,
/// cp -a and rsync chown every file they make. With FUSE_HANDLE_KILLPRIV_V2
/// the kernel instead flags the requests that must drop the bits, and the
/// host drops them, for every module. libfuse 3.14 neither asks for this
/// nor passes the flags on, so the INIT reply is amended on its way out and
/// the flags are read from the raw request (as Resend reads its bit).
enum KillSetID {
    /// FUSE_HANDLE_KILLPRIV_V2, in fuse_init_in.flags and fuse_init_out.flags.
    static let initFlag: UInt32 = 1 << 28
    /// The request flags: FATTR_KILL_SUIDGID in fuse_setattr_in.valid,
    /// FUSE_WRITE_KILL_SUIDGID in fuse_write_in.write_flags,
    /// FUSE_OPEN_KILL_SUIDGID in fuse_open_in.open_flags.
    static let setattrFlag: UInt32 = 1 << 11
    static let writeFlag: UInt32 = 1 << 2
    static let openFlag: UInt32 = 1 << 0
    /// Where a file's capabilities are kept.
    static let capabilities: FileName = "security.capability"

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Notes whether the request just read into `buffer` asks to drop the
    /// bits. (The loop thread that reads a request also handles it.)
    static func noteRead(_ buffer: UnsafeRawPointer, _ count: Int) {
        guard count >= 48 else { return asks(false) }
        func word(at offset: Int) -> UInt32 {
            offset + 4 <= count ? buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self) : 0
        }
        // After the 40-byte fuse_in_header.
        switch buffer.loadUnaligned(fromByteOffset: 4, as: UInt32.self) {
        case 4: asks(word(at: 40) & setattrFlag != 0)  // SETATTR: valid
        case 16: asks(word(at: 60) & writeFlag != 0)  // WRITE: write_flags
        case 14: asks(word(at: 44) & openFlag != 0)  // OPEN: open_flags
        default: asks(false)
        }
    }

    private static func asks(_ kill: Bool) {
        if kill != asked { pthread_setspecific(key, kill ? UnsafeRawPointer(bitPattern: 1) : nil) }
    }

    /// True while this thread handles a request that must drop the bits.
    static var asked: Bool { pthread_getspecific(key) != nil }

    /// `mode` without the bits Linux drops.
    static func dropped(_ mode: UInt32) -> UInt32 {
        var mode = mode & ~UInt32(S_ISUID)
        if mode & UInt32(S_IXGRP) != 0 { mode &= ~UInt32(S_ISGID) }
        return mode
    }

    /// The INIT reply `reply` (fuse_out_header then fuse_init_out) with
    /// FUSE_HANDLE_KILLPRIV_V2 granted, if the kernel's INIT request
    /// `request` offered it; nil to send the reply as it is.
    static func granted(_ reply: [UInt8], request: [UInt8]) -> [UInt8]? {
        guard request.count >= 56, reply.count >= 32 else { return nil }
        let offered = request.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 52, as: UInt32.self) }
        let error = reply.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4, as: Int32.self) }
        guard offered & initFlag != 0, error == 0 else { return nil }
        var amended = reply
        amended.withUnsafeMutableBytes {
            let flags = $0.loadUnaligned(fromByteOffset: 28, as: UInt32.self)
            $0.storeBytes(of: flags | initFlag, toByteOffset: 28, as: UInt32.self)
        }
        return amended
    }
}

extension FuseServer {
    /// `changes` with the set-ID bits of `ino` dropped too, if the request
    /// asks (a chown, or a truncate by a caller without CAP_FSETID).
    func droppingSetID(_ changes: SetAttributes, _ fs: any FileSystem, _ ctx: RequestContext,
                       ino: InodeNumber) throws -> SetAttributes {
        guard KillSetID.asked, changes.mode == nil else { return changes }
        let mode = try fs.getattr(ctx, ino: ino).mode
        var changes = changes
        if KillSetID.dropped(mode) != mode { changes.mode = KillSetID.dropped(mode) }
        return changes
    }

    /// After a write through a handle that skips the page cache
    /// (DirectWrites) by a caller without CAP_FSETID: Linux drops a written
    /// file's capabilities too, which the kernel does by itself only before
    /// writes through the page cache.
    func dropCapabilitiesIfAsked(_ fs: any FileSystem, _ ctx: RequestContext, ino: InodeNumber) {
        guard KillSetID.asked, (try? fs.getxattr(ctx, ino: ino, name: KillSetID.capabilities)) != nil else { return }
        try? fs.removexattr(ctx, ino: ino, name: KillSetID.capabilities)
    }

    /// After a write or an open with O_TRUNC: drops the set-ID bits of
    /// `ino` if the request asks (its caller has no CAP_FSETID).
    func dropSetIDIfAsked(_ fs: any FileSystem, _ ctx: RequestContext, ino: InodeNumber) throws {
        guard KillSetID.asked else { return }
        let mode = try fs.getattr(ctx, ino: ino).mode
        if KillSetID.dropped(mode) != mode {
            _ = try fs.setattr(ctx, ino: ino, SetAttributes(mode: KillSetID.dropped(mode)), handle: nil)
            notifyKernel(ino)  // its cached mode still has them
        }
    }
}
