import BentoServices
import CFuse3
import Glibc

/// The kernel side of a mount: /dev/fuse opened by us and mounted with
/// mount(2), so that we own the fd (a restarted daemon can take it over).
public enum FuseMount {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The mount type the kernel shows (fuse.TYPE) and `mount -t` takes
    /// for a module's file system: "xv6fs" mounts as fuse.xv6.
    public static func subtype(of fileSystem: String) -> String {
        fileSystem.count > 2 && fileSystem.hasSuffix("fs") ? String(fileSystem.dropLast(2)) : fileSystem
    }

    /// Mounts a new FUSE file system at `mountpoint` (type fuse.`type`,
    /// source `source`); returns the /dev/fuse fd. `readOnly`: the kernel
    /// refuses every change (EROFS) before it reaches the server.
    public static func mount(at mountpoint: String, source: String, type: String,
                             allowOther: Bool, readOnly: Bool = false) throws(Failure) -> Int32 {
        try cleanUpDeadMount(at: mountpoint)
        var st = stat()
        guard stat(mountpoint, &st) == 0 else { throw Failure(description: "\(mountpoint): \(lastError())") }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw Failure(description: "\(mountpoint): not a directory") }
        let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: "/dev/fuse: \(lastError())") }
        var options = "fd=\(fd),rootmode=\(String(st.st_mode & S_IFMT, radix: 8)),user_id=0,group_id=0,default_permissions"
        if allowOther { options += ",allow_other" }
        let flags = UInt(MS_NOSUID | MS_NODEV) | (readOnly ? UInt(MS_RDONLY) : 0)
        guard Glibc.mount(source, mountpoint, "fuse.\(type)", flags, options) == 0 else {
            let why = lastError()
            close(fd)
            throw Failure(description: "mounting \(source) at \(mountpoint): \(why)")
        }
        return fd
    }

    /// A mountpoint left by a server that died answers ENOTCONN: detach it
    /// (several may be stacked). statvfs, unlike stat, always asks the
    /// server, so cached attributes cannot hide a dead mount.
    public static func cleanUpDeadMount(at mountpoint: String) throws(Failure) {
        var fs = statvfs()
        for _ in 0..<16 {
            guard statvfs(mountpoint, &fs) != 0, errno == ENOTCONN else { break }
            guard umount2(mountpoint, Int32(MNT_DETACH)) == 0 else {
                throw Failure(description: "\(mountpoint): dead mount could not be detached: \(lastError())")
            }
        }
        if isFuseMount(mountpoint) {
            throw Failure(description: "\(mountpoint): a FUSE file system is already mounted there")
        }
    }

    /// True when the topmost mount at `mountpoint` is a FUSE mount.
    public static func isFuseMount(_ mountpoint: String) -> Bool {
        guard let resolved = realpath(mountpoint, nil) else { return false }
        defer { free(resolved) }
        return MountTable.read().top(at: String(cString: resolved))?.type.hasPrefix("fuse") ?? false
    }

    /// Unmounts; a busy mount is detached lazily so that we can still exit.
    public static func unmount(_ mountpoint: String) {
        if umount2(mountpoint, 0) != 0 && errno == EBUSY {
            _ = umount2(mountpoint, Int32(MNT_DETACH))
        }
    }

    static func lastError() -> String { String(cString: strerror(errno)) }
}
