import BentoKit
import Glibc

/// Requests the kernel delivers a second time. After a restart or a crash
/// the new daemon writes FUSE_NOTIFY_RESEND, and the kernel queues again
/// every request the dead process had read but not answered, with bit 63
/// set in its unique id. Such a request may have been carried out already:
/// its reply, not its effect, died with the process. Its retry must then
/// answer as the first attempt would have, not with a spurious EEXIST or
/// ENOENT (Docs/systemd.md, "Requests in flight").
enum Resend {
    /// The unique id's flag bit on a resent request (FUSE protocol 7.40).
    static let flag: UInt64 = 1 << 63

    // The loop thread that reads a request also handles it, so a
    // thread-local flag set at read time tells the handler.
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Notes whether the request just read into `buffer` is a resend.
    static func noteRead(_ buffer: UnsafeRawPointer, _ count: Int) {
        guard count >= 16 else { return }
        let resent = buffer.loadUnaligned(fromByteOffset: 8, as: UInt64.self) & flag != 0
        if resent != isCurrent { pthread_setspecific(key, resent ? UnsafeRawPointer(bitPattern: 1) : nil) }
    }

    /// True while this thread handles a resent request.
    static var isCurrent: Bool { pthread_getspecific(key) != nil }

    /// Runs `body`; if a resent request fails with `error` (the first
    /// attempt's effect is already there), answers `alreadyDone()` instead,
    /// and tells `onRetry`.
    static func retrying<T>(_ error: Errno, _ body: () throws -> T, alreadyDone: () throws -> T,
                            onRetry: () -> Void = {}) throws -> T {
        do {
            return try body()
        } catch let failure as Errno where failure == error && isCurrent {
            onRetry()
            return try alreadyDone()
        }
    }
}

extension FuseServer {
    /// Resend.retrying, counted in the server's stats and its pressure log.
    func retrying<T>(_ error: Errno, _ body: () throws -> T, alreadyDone: () throws -> T) throws -> T {
        try Resend.retrying(error, body, alreadyDone: alreadyDone) {
            stats.countResendRetry()
            pressure.note(PressureLog.resendRetried(error.rawValue))
        }
    }

    /// The entry at `name`, which a resent request's first attempt made;
    /// with `ino`, only if it is that inode (else `error`). The lookup
    /// count it takes is the one the reply gives the kernel; `counted:
    /// false` gives it back (the reply carries no entry).
    func madeBefore(_ fs: any FileSystem, _ ctx: RequestContext, parent: InodeNumber, name: FileName,
                    ino: InodeNumber? = nil, counted: Bool = true, otherwise error: Errno) throws -> Entry {
        let entry: Entry
        do { entry = try fs.lookup(ctx, parent: parent, name: name) } catch { throw error }
        let otherInode = ino.map { $0 != entry.ino } ?? false
        if otherInode || !counted { fs.forget(ino: entry.ino, count: 1) }
        if otherInode { throw error }
        return entry
    }
}
