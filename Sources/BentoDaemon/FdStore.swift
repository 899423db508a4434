import BentoFUSE
import BentoKit
import BentoSystemd
import BentoWorker
import Glibc

/// What systemd's fd store keeps of each mount so that a restarted daemon
/// takes the mount over instead of mounting again (Docs/systemd.md):
///
///   fuse@MOUNTPOINT     the /dev/fuse fd: the mount itself
///   session@MOUNTPOINT  a memfd: the image path, the kernel's INIT request
///                       and whether the writeback cache was agreed
///   journal@MOUNTPOINT  a memfd: the operation journal (Docs/crash-journal.md),
///                       every answered operation's blocks
///   state@MOUNTPOINT    a memfd: the module's exported state, written only
///                       by a clean restart (none after a crash)
///   image@MOUNTPOINT    the image, open: its lock (ImageLock) lives as long
///                       as this fd, so no other program takes the image
///                       between two processes of the daemon
///
/// All but the state are stored when the mount starts, so a crash finds them.
enum FdStore {
    enum Kind: String, CaseIterable { case fuse, session, journal, state, image }

    /// What a restarted daemon finds of one mount.
    struct Stored {
        var fuse: Int32?
        var journal: Int32?
        var image: String?
        /// The image, open and locked; missing in records of daemons
        /// before 2026-12 (the image is then opened and locked anew).
        var imageFile: Int32?
        var initRequest: [UInt8]?
        /// Whether the kernel was given the writeback cache; unknown in
        /// records of daemons before 2026-12 (taken as yes: see adopt).
        var writebackCache: Bool?
        /// The memfd of the state a clean restart exported (SavedState).
        var state: Int32?
        /// Why a memfd could not be read, if one could not.
        var damage: String?
    }

    /// fd names allow printable ASCII but ':', so mountpoints are escaped.
    static func name(_ kind: Kind, _ mountpoint: String) -> String {
        kind.rawValue + "@" + mountpoint.utf8.map { byte in
            byte > 0x20 && byte < 0x7f && byte != UInt8(ascii: ":") && byte != UInt8(ascii: "%")
                ? String(UnicodeScalar(byte)) : "%" + String(byte, radix: 16, uppercase: true).leftPadded(2)
        }.joined()
    }

    static func parse(_ name: String) -> (Kind, String)? {
        guard let at = name.firstIndex(of: "@"), let kind = Kind(rawValue: String(name[..<at])) else { return nil }
        var bytes: [UInt8] = []
        var rest = Array(name[name.index(after: at)...].utf8)[...]
        while let byte = rest.first {
            if byte == UInt8(ascii: "%"), rest.count >= 3,
               let value = UInt8(String(decoding: rest.dropFirst().prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(value)
                rest = rest.dropFirst(3)
            } else {
                bytes.append(byte)
                rest = rest.dropFirst()
            }
        }
        return (kind, String(decoding: bytes, as: UTF8.self))
    }

    /// Stores a mount's fuse fd, journal, image fd and session record.
    /// (`imageFile` nil: the store has it already).
    static func keep(mountpoint: String, fuse: Int32, journal: Int32, image: String, imageFile: Int32?,
                     negotiated: FuseServer.Negotiated) -> Bool {
        var record = StateWriter()
        record.write(image)
        record.write(bytes: negotiated.initRequest)
        record.write(negotiated.writebackCache)
        guard ServiceManager.store(fuse, name: name(.fuse, mountpoint)),
              ServiceManager.store(journal, name: name(.journal, mountpoint)),
              imageFile.map({ keep(imageFile: $0, mountpoint: mountpoint) }) ?? true else { return false }
        return keep(record.bytes, as: .session, mountpoint: mountpoint)
    }

    /// Stores the image fd, and with it the image's lock.
    static func keep(imageFile fd: Int32, mountpoint: String) -> Bool {
        ServiceManager.store(fd, name: name(.image, mountpoint))
    }

    /// Stores the memfd a worker wrote its exported state to (SavedState).
    static func keep(stateFile fd: Int32, mountpoint: String) -> Bool {
        ServiceManager.store(fd, name: name(.state, mountpoint))
    }

    /// Replaces the stored operation journal (the previous one was unusable).
    static func replace(journal: Int32, mountpoint: String) -> Bool {
        forget(mountpoint: mountpoint, kinds: [.journal])
        return ServiceManager.store(journal, name: name(.journal, mountpoint))
    }

    /// Drops what is stored of a mount (all of it, or one kind).
    static func forget(mountpoint: String, kinds: [Kind] = Kind.allCases) {
        for kind in kinds { ServiceManager.removeStored(name: name(kind, mountpoint)) }
    }

    /// Everything systemd passed us, by mountpoint. Fds that are not ours
    /// are closed.
    static func collect() -> [String: Stored] {
        var result: [String: Stored] = [:]
        for (fdName, fd) in ServiceManager.storedFileDescriptors() {
            guard let (kind, mountpoint) = parse(fdName) else { close(fd); continue }
            var stored = result[mountpoint] ?? Stored()
            switch kind {
            case .fuse:
                stored.fuse = fd
            case .journal:
                stored.journal = fd
            case .session:
                do {
                    var reader = StateReader(try MemoryFile.contents(of: fd))
                    stored.image = try reader.readString()
                    stored.initRequest = try reader.readBytes()
                    if !reader.isAtEnd { stored.writebackCache = try reader.read(Bool.self) }
                } catch { stored.damage = "session record unreadable: \(error)" }
                close(fd)
            case .state:
                stored.state = fd  // read by the worker, which falls back to the disk if it cannot
            case .image:
                stored.imageFile = fd
            }
            result[mountpoint] = stored
        }
        return result
    }

    private static func keep(_ bytes: [UInt8], as kind: Kind, mountpoint: String) -> Bool {
        let fd = ServiceManager.memoryFile(name: "bento-\(kind.rawValue)")
        guard fd >= 0 else { return false }
        defer { close(fd) }  // systemd has its own copy once stored
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        return written == bytes.count && ServiceManager.store(fd, name: name(kind, mountpoint))
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
