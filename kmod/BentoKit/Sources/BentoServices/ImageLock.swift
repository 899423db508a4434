import CBentoServices
import Glibc

/// The lock that keeps two programs from changing one image at once: an
/// exclusive OFD lock (F_OFD_SETLK) on the whole image file or block device.
/// bento-upgraded holds it while it serves an image, mkfs.xv6 while it
/// formats one, fsck.xv6 while it repairs one.
///
/// An OFD lock belongs to the open file description, not to a process: a
/// worker handed a dup of the fd, or systemd's fd store keeping one, keeps
/// the lock; it ends when the last fd of that description is closed.
/// Another open() of the same file, even in the same process, conflicts.
public enum ImageLock {
    public enum Outcome: Equatable, Sendable {
        case locked
        /// Another open file description holds a lock on the image.
        case heldElsewhere
        case failed(Int32)
    }

    /// Locks the image open on `fd` (open for writing). Locking again
    /// through the same open file description succeeds. `shared`: a read
    /// lock, for an image served read-only (the fd may be open read-only):
    /// it shuts out every writer, not other readers.
    public static func lock(_ fd: Int32, shared: Bool = false) -> Outcome {
        if (shared ? bento_ofd_lock_shared(fd) : bento_ofd_lock(fd)) == 0 { return .locked }
        return errno == EAGAIN || errno == EACCES ? .heldElsewhere : .failed(errno)
    }

    /// Whether a lock on the image open on `fd` is held through another
    /// open file description; takes nothing. nil if the kernel cannot tell.
    public static func isHeldElsewhere(_ fd: Int32) -> Bool? {
        switch bento_ofd_is_locked(fd) {
        case 0: false
        case 1: true
        default: nil
        }
    }

    /// Whether some program holds the image at `path` locked; nil if it
    /// cannot be opened or the kernel cannot tell.
    public static func isHeld(path: String) -> Bool? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return isHeldElsewhere(fd)
    }
}
