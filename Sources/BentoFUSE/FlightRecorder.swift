import CFlightRecorder
import Glibc

/// What each request thread of a worker is doing, in a memfd the
/// supervisor keeps (CFlightRecorder.h): after a worker dies, which
/// requests were in flight and which one faulted; while it runs, which
/// one hangs.
public final class FlightRecorder: @unchecked Sendable {
    private let recorder: UnsafeMutablePointer<bento_recorder>
    public let fd: Int32

    /// A new, empty recorder (the supervisor's, one per mount).
    public static func create() -> Int32 { bento_recorder_create() }

    /// Maps the recorder in `fd`; nil if it is not one. Does not take `fd`.
    public init?(fd: Int32) {
        guard let mapped = bento_recorder_map(fd), mapped.pointee.magic == BENTO_RECORDER_MAGIC else { return nil }
        recorder = mapped
        self.fd = fd
    }

    deinit { munmap(recorder, MemoryLayout<bento_recorder>.size) }

    /// Worker side: request threads record into this recorder from now on,
    /// and a fault in any of them marks its request before the process dies.
    public func record() {
        bento_recorder_use(recorder)
        _ = bento_recorder_catch_faults()
    }

    public func clear() { bento_recorder_clear(recorder) }

    /// One request in flight.
    public struct Entry: Equatable, Sendable {
        public var slot: Int
        /// The kernel's id for it, without the resend bit.
        public var unique: UInt64
        public var opcode: UInt32
        public var node: UInt64
        public var name: String?
        /// The signal its thread died of, FlightRecorder.hang, or 0.
        public var fault: Int32
        public var startedNanoseconds: UInt64

        public init(slot: Int = 0, unique: UInt64, opcode: UInt32, node: UInt64, name: String? = nil,
                    fault: Int32 = 0, startedNanoseconds: UInt64 = 0) {
            self.slot = slot
            self.unique = unique
            self.opcode = opcode
            self.node = node
            self.name = name
            self.fault = fault
            self.startedNanoseconds = startedNanoseconds
        }

        /// "create of \"poison\" in node 1", for people.
        public var description: String {
            "\(FuseOpcode.name(opcode))" + (name.map { " of \"\($0)\" in node \(node)" } ?? " of node \(node)")
        }
    }

    /// `fault` of a request found running past the hang limit.
    public static let hang = Int32(BENTO_FAULT_HANG)

    /// Every request read and not yet finished.
    public var inFlight: [Entry] {
        (0..<Int(BENTO_RECORDER_SLOTS)).compactMap { i in
            var slot = bento_recorder_read(recorder, Int32(i))
            guard slot.unique != 0 else { return nil }
            let name = slot.name_length == 0 ? nil : withUnsafeBytes(of: &slot.name) {
                String(decoding: $0.prefix(Int(slot.name_length)), as: UTF8.self)
            }
            return Entry(slot: i, unique: slot.unique, opcode: slot.opcode, node: slot.nodeid, name: name,
                         fault: slot.fault, startedNanoseconds: slot.started_ns)
        }
    }

    /// Marks the request in `slot` as the cause of a death to come.
    public func mark(slot: Int, fault: Int32) { bento_recorder_mark(recorder, Int32(slot), fault) }
}

/// FUSE opcode names (linux/fuse.h), for logs.
public enum FuseOpcode {
    static let names: [UInt32: String] = [
        1: "lookup", 2: "forget", 3: "getattr", 4: "setattr", 5: "readlink", 6: "symlink", 8: "mknod", 9: "mkdir",
        10: "unlink", 11: "rmdir", 12: "rename", 13: "link", 14: "open", 15: "read", 16: "write", 17: "statfs",
        18: "release", 20: "fsync", 21: "setxattr", 22: "getxattr", 23: "listxattr", 24: "removexattr", 25: "flush",
        26: "init", 27: "opendir", 28: "readdir", 29: "releasedir", 30: "fsyncdir", 31: "getlk", 32: "setlk",
        33: "setlkw", 34: "access", 35: "create", 36: "interrupt", 37: "bmap", 38: "destroy", 39: "ioctl", 40: "poll",
        42: "batch_forget", 43: "fallocate", 44: "readdirplus", 45: "rename2", 46: "lseek", 47: "copy_file_range",
    ]
    public static func name(_ opcode: UInt32) -> String { names[opcode] ?? "opcode \(opcode)" }
}
