import BentoServices
import Glibc

/// An image held locked (ImageLock) while this value lives: mkfs.xv6 holds
/// one while it formats, fsck.xv6 while it repairs, so that bento-upgraded
/// cannot start serving the image half changed, nor two of them meet.
public final class ImageHold {
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

    private let fd: Int32

    /// Locks the image at `path`; refuses one that is locked or mounted.
    public init(_ path: String) throws(Refusal) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path, errno) }
        let outcome = ImageLock.lock(fd)
        let mounts = MountTable.read().mounts(of: path)
        guard outcome != .heldElsewhere, mounts.isEmpty else {
            close(fd)
            throw .inUse(ImageUse(path: path, locked: outcome == .heldElsewhere, mounts: mounts))
        }
        // A file system that cannot lock (.failed) still gets the mount check.
        self.fd = fd
    }

    deinit { close(fd) }
}
