import BentoKit
import XV6Layout

/// Pass 2: directory contents. Directories reachable from the root are
/// parsed breadth-first (marking what they name as reachable), then the
/// unreachable ones, so that every entry counts toward its inode's links.
extension CheckRun {
    func checkDirectoryTree() {
        let root = Layout.rootInode
        let total = UInt64(shapes.count)
        var parsed: UInt64 = 0
        tick(2, 0, of: total)
        rootIsDirectory = isDirectory(root)
        if rootIsDirectory {
            reached.insert(UInt64(root))
            var queue = [root]
            var next = 0
            // Each directory enters the queue once (reached is a set): bounded.
            while next < queue.count {
                let dir = queue[next]
                next += 1
                parseDirectory(dir, reachable: true, queue: &queue)
                parsed += 1
                tick(2, parsed, of: total)
            }
        } else {
            let what = corrupt.contains(UInt64(root)) ? "corrupt" : modes[Int(root)] == 0 ? "free" : "not a directory"
            error(.rootDirectory, "the root inode \(root) is \(what)", inode: root)
            treeDamaged = true
        }
        var unused: [UInt32] = []
        for dir in shapes.keys.sorted() where !reached.contains(UInt64(dir)) {
            parseDirectory(dir, reachable: false, queue: &unused)
            parsed += 1
            tick(2, parsed, of: total)
        }
        tick(2, total, of: total)
        checkDirectoryNames()
    }

    /// Each directory but the root is named once, by the directory its ".."
    /// names; the root by nobody, its ".." naming itself.
    private func checkDirectoryNames() {
        let root = Layout.rootInode
        for dir in shapes.keys.sorted() {
            let count = names[Int(dir)]
            let dotdot = contents[dir]?.dotdot
            if dir == root {
                if count > 0 {
                    error(.directoryCycle, "the root directory is named by \(count) entr\(count == 1 ? "y" : "ies")",
                          inode: dir)
                }
                if let dotdot, dotdot != root {
                    error(.dotEntry, "\"..\" of the root directory names inode \(dotdot), not the root", inode: dir)
                }
            } else if count > 1 {
                error(.directoryLinks, "directory \(dir) is named by \(count) entries", inode: dir)
            } else if count == 1, let parent = parents[dir], let dotdot, dotdot != parent {
                error(.dotEntry, "\"..\" of directory \(dir) names inode \(dotdot), but directory \(parent) holds it",
                      inode: dir)
            }
        }
    }

    private func parseDirectory(_ dir: UInt32, reachable: Bool, queue: inout [UInt32]) {
        guard let shape = shapes[dir] else { return }
        var found = DirectoryContents()
        var seen = Set<[UInt8]>()
        var hasDot = false
        if shape.incomplete {
            error(.directoryHole, "directory \(dir) has holes or unusable blocks within its size of \(shape.size) bytes",
                  inode: dir)
            treeDamaged = true
        }
        for (index, address) in shape.blocks {
            guard let block = readBlock(UInt64(address), "block \(index) of directory \(dir)") else {
                treeDamaged = true
                continue
            }
            var offset = 0
            // Records are at least 12 bytes long: at most 341 per block.
            while offset < Layout.blockSize {
                let parsed = block.withUnsafeBytes { DirectoryRecord.parse($0, at: offset) }
                guard let record = parsed else {
                    let detail = offset + DirectoryRecord.headerSize <= Layout.blockSize
                        ? "length \(block.u16(offset + 4)), name length \(block[offset + 6])" : "header cut off"
                    error(.directoryRecord, "directory \(dir), block \(index) (\(address)): malformed record at offset "
                          + "\(offset) (\(detail))", inode: dir, block: UInt64(address))
                    treeDamaged = true
                    break
                }
                if record.ino != 0 {
                    let start = offset + DirectoryRecord.headerSize
                    let name = Array(block[start..<(start + record.nameLength)])
                    let entry = NamedEntry(dir: dir, name: name, ino: record.ino, type: record.type)
                    if !seen.insert(name).inserted {
                        error(.duplicateName, "directory \(dir) holds the name \(entry.quotedName) more than once", inode: dir)
                    }
                    if name == [0x2E] {
                        hasDot = true
                        if record.ino != dir {
                            error(.dotEntry, "\".\" of directory \(dir) names inode \(record.ino), not itself", inode: dir)
                        }
                    } else if name == [0x2E, 0x2E] {
                        found.dotdot = record.ino
                    } else {
                        countEntry(entry, reachable: reachable, into: &found, queue: &queue)
                    }
                }
                offset += record.recordLength
            }
        }
        if !hasDot { error(.dotEntry, "directory \(dir) has no \".\" entry", inode: dir) }
        if found.dotdot == nil { error(.dotEntry, "directory \(dir) has no \"..\" entry", inode: dir) }
        contents[dir] = found
    }

    /// One ordinary entry: check the name and the inode it names, count it.
    private func countEntry(_ entry: NamedEntry, reachable: Bool, into found: inout DirectoryContents,
                            queue: inout [UInt32]) {
        let dir = entry.dir
        if entry.name.contains(0) || entry.name.contains(0x2F) {
            error(.badName, "directory \(dir): the name \(entry.quotedName) holds '/' or NUL", inode: dir)
        }
        let ino = entry.ino
        guard ino < sb.inodeCount else {
            error(.danglingEntry, "directory \(dir): \(entry.quotedName) names inode \(ino), beyond the inode table",
                  inode: dir)
            return
        }
        // A corrupt inode is reported already; it can be neither reached nor counted.
        guard !corrupt.contains(UInt64(ino)) else { return }
        let mode = modes[Int(ino)]
        guard mode != 0 else {
            error(.danglingEntry, "directory \(dir): \(entry.quotedName) names free inode \(ino)", inode: dir)
            return
        }
        if entry.type != DirectoryRecord.typeByte(mode: mode) {
            error(.entryType, "directory \(dir): \(entry.quotedName) has type \(entry.type), but inode \(ino) is a "
                  + "\(typeName(mode))", inode: dir)
        }
        names[Int(ino)] = names[Int(ino)].incremented()
        let isDir = mode & FileMode.typeMask == FileMode.directory
        if isDir { found.subdirectories = found.subdirectories.incremented() }
        if reachable {
            if reached.insert(UInt64(ino)) && isDir {
                parents[ino] = dir
                queue.append(ino)
            }
        } else if isDir && !reached.contains(UInt64(ino)) && parents[ino] == nil {
            parents[ino] = dir
        }
    }
}

/// A directory entry being checked.
struct NamedEntry {
    var dir: UInt32
    var name: [UInt8]
    var ino: UInt32
    var type: UInt8

    /// The name for messages, with unprintable bytes escaped.
    var quotedName: String {
        var text = "\""
        for byte in name {
            if byte >= 0x20 && byte < 0x7F && byte != 0x22 && byte != 0x5C {
                text.append(Character(Unicode.Scalar(byte)))
            } else {
                let hex = String(byte, radix: 16)
                text += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return text + "\""
    }
}
