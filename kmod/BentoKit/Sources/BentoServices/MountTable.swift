import Glibc

/// The mounts of this process's mount namespace.
public struct MountTable: Sendable {
    public struct Entry: Sendable, Equatable {
        public var mountpoint: String
        public var type: String
        public var source: String
        /// st_dev of what is mounted ("major:minor"): a block device's number.
        public var device: (major: UInt32, minor: UInt32)

        public static func == (a: Entry, b: Entry) -> Bool {
            a.mountpoint == b.mountpoint && a.type == b.type && a.source == b.source && a.device == b.device
        }
    }

    public var entries: [Entry]

    public static func read(_ path: String = "/proc/self/mountinfo") -> MountTable {
        parse(ProcFile.text(at: path) ?? "")
    }

    /// mountinfo lines: "id parent major:minor root mountpoint options
    /// [optional fields] - type source super-options".
    public static func parse(_ text: String) -> MountTable {
        var entries: [Entry] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let dash = fields.firstIndex(of: "-"), dash >= 6, fields.count > dash + 2 else { continue }
            let numbers = fields[2].split(separator: ":").compactMap { UInt32($0) }
            guard numbers.count == 2 else { continue }
            entries.append(Entry(mountpoint: unescape(fields[4]), type: unescape(fields[dash + 1]),
                                 source: unescape(fields[dash + 2]), device: (numbers[0], numbers[1])))
        }
        return MountTable(entries: entries)
    }

    /// The topmost mount at `mountpoint` (given as mountinfo shows it:
    /// absolute, no trailing slash), if any: the last one listed there.
    public func top(at mountpoint: String) -> Entry? {
        entries.last { $0.mountpoint == mountpoint }
    }

    /// Mounts of the image file or block device at `path`: by source
    /// path, and for a block device by its device number too.
    public func mounts(of path: String) -> [Entry] {
        let real = realPath(path) ?? path
        var info = stat()
        let rdev = stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFBLK ? Self.split(info.st_rdev) : nil
        return entries.filter { entry in
            entry.source == path || entry.source == real
                || (entry.source.hasPrefix("/") && realPath(entry.source) == real)
                || (rdev.map { $0 == entry.device } ?? false)
        }
    }

    /// glibc's major() and minor(), which Swift does not see (macros).
    static func split(_ device: dev_t) -> (UInt32, UInt32) {
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff)
        let minor = (device & 0xff) | ((device >> 12) & ~0xff)
        return (UInt32(truncatingIfNeeded: major), UInt32(truncatingIfNeeded: minor))
    }

    /// mountinfo writes space, tab, newline and backslash as \ooo.
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var rest = Array(field.utf8)[...]
        while let byte = rest.first {
            if byte == UInt8(ascii: "\\"), rest.count >= 4,
               let value = UInt8(String(decoding: rest.dropFirst().prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                rest = rest.dropFirst(4)
            } else {
                bytes.append(byte)
                rest = rest.dropFirst()
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

private func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}
