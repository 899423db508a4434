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
        // Not through Foundation's URL: it would stat the mount point.
        guard let table = text(at: "/proc/self/mountinfo") else { return nil }
        var wanted = mountpoint
        while wanted.count > 1 && wanted.hasSuffix("/") { wanted.removeLast() }
        var found: String?
        for line in table.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4, unescape(fields[4]) == wanted else { continue }
            found = String(fields[2])  // the last one: mounted over the others
        }
        return found
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes.
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var rest = Array(field.utf8)[...]
        while let byte = rest.popFirst() {
            if byte == UInt8(ascii: "\\"), rest.count >= 3, let value = UInt8(String(decoding: rest.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                rest = rest.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func number(at path: String) -> Double? {
        text(at: path).flatMap { Double($0.split(separator: "\n").first ?? "") }
    }

    static func memoryTotal() -> Double {
        let line = text(at: "/proc/meminfo")?.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
        let kib = line?.split(separator: " ").dropFirst().first.flatMap { Double($0) }
        return (kib ?? Double(16 << 20)) * 1024
    }

    /// A small /proc or /sys file, read whole.
    static func text(at path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return n == 0 ? String(decoding: bytes, as: UTF8.self) : nil }
            bytes += chunk[0..<n]
        }
    }
}
