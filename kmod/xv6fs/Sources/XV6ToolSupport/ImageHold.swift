import BentoServices
import Glibc

/// Holding an image locked (ImageLock) until the process exits: mkfs.xv6
/// holds the image it formats, fsck.xv6 the one it repairs, so that
/// bento-upgraded cannot start serving it half changed, nor two tools meet.
/// (Until exit, not a scope: nothing can end it early by mistake.)
public enum ImageHold {
    public enum Refusal: Error, CustomStringConvertible {
        case inUse(ImageUse)
        case cannotOpen(String, Int32)

        public var description: String {
            switch self {
            case .inUse(let use): use.description
            case .cannotOpen(let path, let error): "cannot open \(path): \(String(cString: strerror(error)))"
            }
        }
    }

    /// Locks the image at `path`; refuses one that is locked or mounted.
    public static func take(_ path: String) throws(Refusal) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path, errno) }
        let outcome = ImageLock.lock(fd)
        let mounts = MountTable.read().mounts(of: path)
        guard outcome != .heldElsewhere, mounts.isEmpty else {
            close(fd)
            throw .inUse(ImageUse(path: path, locked: outcome == .heldElsewhere, mounts: mounts))
        }
        // The fd stays open, and the lock held, until exit. A file system
        // that cannot lock (.failed) still gets the mount check.
    }
}
