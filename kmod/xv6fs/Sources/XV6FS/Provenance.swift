import BentoKit
import Glibc
import XV6Layout

/// xv6fs 2.x: provenance, as in the Bento paper. Every create, open for
/// writing, write, rename, link, unlink and setattr is recorded, with the
/// time, the process (pid, uid, executable) and the names and inode numbers
/// involved, as a line appended to /.provenance: a regular file, root's
/// alone (mode 0600), that version 1 reads like any other file.
final class Provenance {
    static let fileName = FileName(".provenance")
    /// The file's inode once known (it travels in state format xv6fs/2).
    var fileIno: UInt32?
    /// Executables by pid, looked up in /proc at most once a second.
    private var executables: [Int32: (path: String, seconds: Int64)] = [:]

    init(fileIno: UInt32?) { self.fileIno = fileIno }

    func executable(of pid: Int32, now: Timespec) -> String {
        guard pid > 0 else { return "-" }
        if let known = executables[pid], known.seconds == now.seconds { return known.path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/\(pid)/exe", &buffer, buffer.count - 1)
        let path = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
        if executables.count > 4096 { executables.removeAll(keepingCapacity: true) }
        executables[pid] = (path, now.seconds)
        return path
    }

    /// One record: `<time> pid=<pid> uid=<uid> exe=<path> op=<operation> <details>`.
    func line(_ ctx: RequestContext, _ operation: Xv6FileSystem.Operation, now: Timespec) -> [UInt8] {
        let details: String
        switch operation {
        case .create(let parent, let name, let ino): details = "op=create parent=\(parent) name=\(quote(name)) ino=\(ino)"
        case .write(let ino, let offset, let count): details = "op=write ino=\(ino) offset=\(offset) bytes=\(count)"
        case .setattr(let ino): details = "op=setattr ino=\(ino)"
        case .unlink(let parent, let name, let ino): details = "op=unlink parent=\(parent) name=\(quote(name)) ino=\(ino)"
        case .rename(let parent, let name, let newParent, let newName, let ino):
            details = "op=rename parent=\(parent) name=\(quote(name)) newparent=\(newParent) newname=\(quote(newName)) ino=\(ino)"
        case .link(let ino, let newParent, let newName): details = "op=link ino=\(ino) newparent=\(newParent) newname=\(quote(newName))"
        case .openForWriting(let ino): details = "op=open-write ino=\(ino)"
        }
        let time = "\(now.seconds).\(String(now.nanoseconds).leftPadded(to: 9))"
        return Array("\(time) pid=\(ctx.pid) uid=\(ctx.uid) exe=\(quote(Array(executable(of: ctx.pid, now: now).utf8))) \(details)\n".utf8)
    }

    /// Names in double quotes, with quotes, backslashes and bytes outside
    /// printable ASCII escaped, so that every record stays one line.
    func quote(_ bytes: [UInt8]) -> String {
        var out = "\""
        for b in bytes {
            switch b {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x20...0x7E: out.unicodeScalars.append(Unicode.Scalar(b))
            default: out += "\\x" + String(b, radix: 16).leftPadded(to: 2)
            }
        }
        return out + "\""
    }

    /// True when the operation is about the provenance file itself.
    func concernsItself(_ operation: Xv6FileSystem.Operation) -> Bool {
        guard let own = fileIno else { return false }
        switch operation {
        case .create(_, _, let ino), .write(let ino, _, _), .setattr(let ino), .unlink(_, _, let ino),
             .rename(_, _, _, _, let ino), .link(let ino, _, _), .openForWriting(let ino):
            return ino == own
        }
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

extension Xv6FileSystem {
    /// Turns provenance recording on (version 2). Called before the
    /// instance serves anything.
    func recordProvenance(fileIno: UInt32?) {
        provenance = Provenance(fileIno: fileIno)
        observer = { [unowned self] ctx, operation in record(ctx, operation) }
    }

    /// Appends one record; a failure is reported (SuperBlock.report) and
    /// never fails the operation that was recorded.
    private func record(_ ctx: RequestContext, _ operation: Operation) {
        guard let provenance, !provenance.concernsItself(operation) else { return }
        do {
            let file = try provenanceFile(provenance)
            let line = provenance.line(ctx, operation, now: currentTime())
            _ = try transaction {
                try line.withUnsafeBytes { try volume.writeChunk(file, offset: file.disk.size, data: $0, now: currentTime()) }
            }
            // The kernel learns of this append from nobody else. With its
            // writeback cache it keeps a file's size as it knows it while it
            // holds the inode: the name goes too, so that the next open
            // finds the file anew (Docs/caching.md).
            superBlock.kernelCache.inodeChanged(InodeNumber(file.ino))
            superBlock.kernelCache.entryChanged(parent: InodeNumber(Layout.rootInode), name: Provenance.fileName)
        } catch {
            // Once per operation while the disk is full: the host counts them.
            superBlock.report("provenance not recorded", error)
        }
    }

    /// /.provenance: found by name, or made, root's and mode 0600.
    private func provenanceFile(_ provenance: Provenance) throws -> Inode {
        if let ino = provenance.fileIno, let file = try? volume.inodes.get(ino), file.disk.isRegular, file.disk.nlink > 0 {
            return file
        }
        let root = try volume.inodes.get(Layout.rootInode)
        if let ino = try volume.lookup(root, Provenance.fileName.bytes) {
            let file = try volume.inodes.get(ino)
            guard file.disk.isRegular else { throw Errno.EEXIST }
            provenance.fileIno = ino
            return file
        }
        let file = try makeNode(.root, parent: InodeNumber(Layout.rootInode), name: Provenance.fileName,
                                mode: FileMode.regular | 0o600)
        provenance.fileIno = file.ino
        superBlock.kernelCache.entryChanged(parent: InodeNumber(Layout.rootInode), name: Provenance.fileName)
        return file
    }
}
