import BentoKit
import Glibc
import XV6Layout

/// xv6fs 2.x: provenance, as in the Bento paper. Every create, open for
/// writing, write, rename, link, unlink and setattr is recorded, with the
/// time, the process (pid, uid, executable) and the names and inode numbers
/// involved, as a line appended to /.provenance: a regular file, root's
/// alone (mode 0600), that version 1 reads like any other file.
///
/// On a full file system: the last blocks are reserved for these records
/// (`reserveBlocks`), so that data runs out first. Should even those run
/// out, or the device fail, the operations still succeed, are counted,
/// and the next record that can be written is preceded by one gap line,
/// `op=gap`, with their count and time range: the file never skips an
/// operation silently.
final class Provenance {
    static let fileName = FileName(".provenance")
    /// The file's inode once known (it travels in state format xv6fs/2).
    var fileIno: UInt32?
    /// Operations not recorded since the last record that was.
    var gap: Gap?

    struct Gap: Equatable {
        var operations: UInt64
        var first: Timespec
        var last: Timespec
        var error: Errno
    }

    /// The reserve: 1% of the data blocks, at least 64 (256 KiB, some
    /// 1,500 records) and at most 4096 (16 MiB).
    static func reserveBlocks(dataBlocks: UInt64) -> UInt64 { min(max(dataBlocks / 100, 64), 4096) }

    /// Counts an operation that could not be recorded.
    func missed(at now: Timespec, _ error: Errno) {
        if var gap {
            gap.operations += 1
            gap.last = now
            self.gap = gap
        } else {
            gap = Gap(operations: 1, first: now, last: now, error: error)
        }
    }

    /// The gap line: `<time> op=gap ops=<count> from=<time> to=<time> error=<errno>`.
    func line(_ gap: Gap, now: Timespec) -> [UInt8] {
        Array("\(stamp(now)) op=gap ops=\(gap.operations) from=\(stamp(gap.first)) to=\(stamp(gap.last)) error=\(gap.error)\n".utf8)
    }

    func stamp(_ t: Timespec) -> String { "\(t.seconds).\(String(t.nanoseconds).leftPadded(to: 9))" }
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
        return Array("\(stamp(now)) pid=\(ctx.pid) uid=\(ctx.uid) exe=\(quote(Array(executable(of: ctx.pid, now: now).utf8))) \(details)\n".utf8)
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
    /// Turns provenance recording on (version 2), with its reserve of
    /// blocks. Called before the instance serves anything.
    func recordProvenance(fileIno: UInt32?, gap: Provenance.Gap? = nil) {
        provenance = Provenance(fileIno: fileIno)
        provenance?.gap = gap
        volume.blocks.reserved = Provenance.reserveBlocks(dataBlocks: volume.sb.totalBlocks - UInt64(volume.sb.dataStart))
        observer = { [unowned self] ctx, operation in record(ctx, operation) }
    }

    /// Appends one record, after the gap line if operations before it were
    /// not recorded. A failure never fails the operation that was
    /// recorded: it is counted in the gap and reported to the host
    /// (SuperBlock.report: logged when such failures begin, then counted),
    /// and logged once when the gap ends.
    private func record(_ ctx: RequestContext, _ operation: Operation) {
        guard let provenance, !provenance.concernsItself(operation) else { return }
        let now = currentTime()
        let gap = provenance.gap
        var text = provenance.line(ctx, operation, now: now)
        if let gap { text = provenance.line(gap, now: now) + text }
        volume.blocks.mayUseReserve = true
        defer { volume.blocks.mayUseReserve = false }
        do {
            let file = try provenanceFile(provenance)
            // A record is written whole or not at all: no half line when
            // the blocks run out in the middle of it.
            let bs = UInt64(Layout.blockSize), start = file.disk.size, end = start + UInt64(text.count)
            let fresh = (end - 1) / bs + 1 - (start + bs - 1) / bs
            guard fresh == 0 || volume.blocks.freeCount >= fresh + 2 else { throw Errno.ENOSPC }  // + 2 for indirect tables
            let written = try transaction {
                try text.withUnsafeBytes { try volume.writeChunk(file, offset: start, data: $0, now: now) }
            }
            guard written == text.count else { throw Errno.EIO }
            provenance.gap = nil
            if let gap {
                superBlock.log("xv6fs: provenance recorded again; \(gap.operations) operations were not recorded "
                               + "(\(gap.error)), marked in /.provenance as a gap")
            }
            // The kernel learns of this append from nobody else. With its
            // writeback cache it keeps a file's size as it knows it while it
            // holds the inode: the name goes too, so that the next open
            // finds the file anew (Docs/caching.md).
            superBlock.kernelCache.inodeChanged(InodeNumber(file.ino))
            superBlock.kernelCache.entryChanged(parent: InodeNumber(Layout.rootInode), name: Provenance.fileName)
        } catch {
            let errno = error as? Errno ?? .EIO
            // Once per operation while the disk is full: the host counts them.
            superBlock.report("provenance not recorded", errno)
            provenance.missed(at: now, errno)
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
