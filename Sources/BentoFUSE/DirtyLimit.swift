import BentoServices
import Glibc

/// How many bytes the kernel may hold dirty for one FUSE mount: its
/// backing device's share of the system's dirty limit. FUSE gives each
/// connection 1% (`max_ratio`) under a strict limit; an administrator may
/// change both in /sys/class/bdi. Computed against all of memory, an upper
/// bound of the kernel's own figure, which follows free memory.
public enum DirtyLimit {
    public static func bytes(mountpoint: String) -> UInt64 {
        let bdi = deviceNumber(of: mountpoint).map { "/sys/class/bdi/\($0)/" }
        let system: Double
        if let fixed = number(at: "/proc/sys/vm/dirty_bytes"), fixed > 0 {
            system = fixed
        } else {
            system = (number(at: "/proc/sys/vm/dirty_ratio") ?? 20) / 100 * memoryTotal()
        }
        let strict = bdi.flatMap { number(at: $0 + "strict_limit") } ?? 1
        guard strict != 0 else { return UInt64(system) }
        let share = bdi.flatMap { number(at: $0 + "max_ratio_fine") }.map { $0 / 1_000_000 }
            ?? bdi.flatMap { number(at: $0 + "max_ratio") }.map { $0 / 100 } ?? 0.01
        return UInt64(system * share)
    }

    /// "major:minor" of the file system mounted at `mountpoint`, from
    /// /proc/self/mountinfo (a stat of the mount point would ask the server
    /// that is calling).
    static func deviceNumber(of mountpoint: String) -> String? {
        var wanted = mountpoint
        while wanted.count > 1 && wanted.hasSuffix("/") { wanted.removeLast() }
        return MountTable.read().top(at: wanted).map { "\($0.device.major):\($0.device.minor)" }
    }

    static func number(at path: String) -> Double? {
        ProcFile.text(at: path).flatMap { Double($0.split(separator: "\n").first ?? "") }
    }

    static func memoryTotal() -> Double {
        let line = ProcFile.text(at: "/proc/meminfo")?.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
        let kib = line?.split(separator: " ").dropFirst().first.flatMap { Double($0) }
        return (kib ?? Double(16 << 20)) * 1024
    }
}
