import BentoServices
import Glibc

/// Who else uses an image: a program holding its lock (ImageLock:
/// bento-upgraded serving it, mkfs.xv6 or fsck.xv6 changing it), and where
/// it is mounted (/proc/self/mountinfo). mkfs.xv6 and fsck.xv6 never change
/// an image in use; fsck.xv6 -n warns that what it reads may be stale.
public struct ImageUse: Sendable, Equatable {
    public var path: String
    public var locked: Bool
    public var mounts: [MountTable.Entry]

    public var inUse: Bool { locked || !mounts.isEmpty }

    /// Looks, taking nothing.
    public static func of(_ path: String) -> ImageUse {
        ImageUse(path: path, locked: ImageLock.isHeld(path: path) ?? false, mounts: MountTable.read().mounts(of: path))
    }

    /// "IMAGE is in use: bento-upgraded serves it at /mnt/x".
    public var description: String {
        let fuse = mounts.filter { $0.type.hasPrefix("fuse") }
        let at = mounts.map(\.mountpoint).joined(separator: ", ")
        if locked && !fuse.isEmpty {
            return "\(path) is in use: bento-upgraded serves it at \(fuse.map(\.mountpoint).joined(separator: ", "))"
        }
        if locked {
            return "\(path) is in use: bento-upgraded serves it, or mkfs.xv6 or fsck.xv6 is changing it "
                + "(a program holds its lock)"
        }
        return "\(path) is in use: it is mounted at \(at)"
    }
}
