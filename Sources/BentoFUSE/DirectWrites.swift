import Glibc

/// Whether a handle opened write-only writes past the kernel's page cache
/// (FOPEN_DIRECT_IO), as the files `tar`, `cp` and `dd` write are opened.
///
/// Without the writeback cache every write(2) is a WRITE request either
/// way. Through the page cache, the kernel first copies the data into pages
/// it allocates and charges, which a write-only handle never reads; a reader
/// that comes later asks the module once. Skipping that copy took a
/// quarter off the kernel-tree untar (Docs/caching.md, "Write-only
/// handles").
///
/// Only on kernels that drop the cached pages a direct write overwrites
/// (commit b359af8275a9 "fuse: Invalidate the page cache after
/// FOPEN_DIRECT_IO write": Linux 6.19, 6.18.3, 6.12.64). On older ones
/// another handle that had read those pages would go on reading old data.
enum DirectWrites {
    /// Whether the running kernel drops them.
    static let kernelDropsOverwrittenPages: Bool = {
        var name = utsname()
        guard uname(&name) == 0 else { return false }
        let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return dropsOverwrittenPages(release: release)
    }()

    /// Whether a kernel of release `release` (as uname -r prints it,
    /// "6.18.44-fc-v1272") drops them; false when it cannot be read.
    static func dropsOverwrittenPages(release: String) -> Bool {
        let numbers = release.prefix { $0.isNumber || $0 == "." }.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
        guard numbers.count >= 2, let major = numbers[0], let minor = numbers[1] else { return false }
        let patch = numbers.count > 2 ? numbers[2] ?? 0 : 0
        guard major == 6 else { return major > 6 }
        switch minor {
        case 19...: return true
        case 18: return patch >= 3
        case 12: return patch >= 64
        default: return false
        }
    }
}
