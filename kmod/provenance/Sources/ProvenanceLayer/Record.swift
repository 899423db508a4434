import BentoKit
import Glibc

/// What the layer records: one line per operation, in the words xv6fs 2.x
/// writes to its /.provenance, so that readers of either need one parser:
/// `<time> pid=<pid> uid=<uid> exe="<path>" op=<operation> <details>`.
enum Operation {
    case create(parent: InodeNumber, name: [UInt8], ino: InodeNumber)
    case write(ino: InodeNumber, offset: UInt64, count: Int)
    case setattr(ino: InodeNumber)
    case unlink(parent: InodeNumber, name: [UInt8], ino: InodeNumber)
    case rename(parent: InodeNumber, name: [UInt8], newParent: InodeNumber, newName: [UInt8], ino: InodeNumber)
    case link(ino: InodeNumber, newParent: InodeNumber, newName: [UInt8])
    case openForWriting(ino: InodeNumber)

    /// The inode the operation is about.
    var ino: InodeNumber {
        switch self {
        case .create(_, _, let ino), .write(let ino, _, _), .setattr(let ino), .unlink(_, _, let ino),
             .rename(_, _, _, _, let ino), .link(let ino, _, _), .openForWriting(let ino):
            ino
        }
    }

    var details: String {
        switch self {
        case .create(let parent, let name, let ino): "op=create parent=\(parent) name=\(quoted(name)) ino=\(ino)"
        case .write(let ino, let offset, let count): "op=write ino=\(ino) offset=\(offset) bytes=\(count)"
        case .setattr(let ino): "op=setattr ino=\(ino)"
        case .unlink(let parent, let name, let ino): "op=unlink parent=\(parent) name=\(quoted(name)) ino=\(ino)"
        case .rename(let parent, let name, let newParent, let newName, let ino):
            "op=rename parent=\(parent) name=\(quoted(name)) newparent=\(newParent) newname=\(quoted(newName)) ino=\(ino)"
        case .link(let ino, let newParent, let newName): "op=link ino=\(ino) newparent=\(newParent) newname=\(quoted(newName))"
        case .openForWriting(let ino): "op=open-write ino=\(ino)"
        }
    }
}

/// Operations not recorded (a full disk, a failing lower file system):
/// the next record that can be written follows one line that says so,
/// `op=gap ops=<count> from=<time> to=<time> error=<errno>`.
struct Gap: Equatable {
    var operations: UInt64
    var first: Timespec
    var last: Timespec
    var error: Errno

    mutating func add(at now: Timespec) {
        operations += 1
        last = now
    }

    func line(now: Timespec) -> String {
        "\(stamp(now)) op=gap ops=\(operations) from=\(stamp(first)) to=\(stamp(last)) error=\(error)\n"
    }
}

func now() -> Timespec {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Timespec(seconds: Int64(ts.tv_sec), nanoseconds: UInt32(ts.tv_nsec))
}

func stamp(_ t: Timespec) -> String {
    let nanos = String(t.nanoseconds)
    return "\(t.seconds)." + String(repeating: "0", count: 9 - nanos.count) + nanos
}

/// A name in double quotes, with quotes, backslashes and bytes outside
/// printable ASCII escaped, so that every record stays one line.
func quoted(_ bytes: [UInt8]) -> String {
    var out = "\""
    for b in bytes {
        switch b {
        case 0x22: out += "\\\""
        case 0x5C: out += "\\\\"
        case 0x20...0x7E: out.unicodeScalars.append(Unicode.Scalar(b))
        default: out += b < 16 ? "\\x0" + String(b, radix: 16) : "\\x" + String(b, radix: 16)
        }
    }
    return out + "\""
}

/// Executables by pid, read from /proc at most once a second per pid.
struct Executables {
    private var known: [Int32: (path: String, seconds: Int64)] = [:]

    mutating func path(of pid: Int32, now: Timespec) -> String {
        guard pid > 0 else { return "-" }
        if let hit = known[pid], hit.seconds == now.seconds { return hit.path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/\(pid)/exe", &buffer, buffer.count - 1)
        let path = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
        if known.count > 4096 { known.removeAll(keepingCapacity: true) }
        known[pid] = (path, now.seconds)
        return path
    }
}
