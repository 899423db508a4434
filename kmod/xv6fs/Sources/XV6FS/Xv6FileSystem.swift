import BentoKit
import XV6Layout

/// The xv6 file system behind the file operations API. Every operation runs
/// under one lock; operations that change the disk run in a log
/// transaction (large writes and truncations in several).
public final class Xv6FileSystem: FileSystem {
    let superBlock: SuperBlock
    let volume: Volume
    let lock = Lock()
    /// Lookup counts and open handles: the host's, shared by every instance
    /// of this mount (an upgrade moves none of it).
    var references: KernelReferences { superBlock.references }
    /// Set after a device error: the disk may be behind memory, so no
    /// further change is accepted.
    var failed = false
    /// Hears every successful change, with who made it: how version 2
    /// records provenance. Called with the lock held.
    var observer: ((RequestContext, Operation) -> Void)?
    /// Version 2's provenance recorder, when it runs.
    var provenance: Provenance?
    /// Without a recorder (version 1): the gap an upgrade handed over,
    /// handed on to the next version, which records it.
    var carriedProvenanceGap: Provenance.Gap?
    /// Served read-only (the host asked, or unknown ro_compat features):
    /// every change fails with EROFS and nothing is written to the image.
    let readOnly: Bool
    /// Whether this version uses the data features: files past 4 GiB
    /// (`bigfile`), fallocate (`unwritten`, `keep_size`) and SEEK_DATA /
    /// SEEK_HOLE. Version 3 sets it; without it fallocate and seek are
    /// refused and no feature bit is ever set.
    public var dataFeatures: Bool {
        get { volume.dataFeatures }
        set { volume.dataFeatures = newValue }
    }
    /// Keeps extended attributes (version 3, Xattrs.swift); versions 1 and
    /// 2 answer that they have none.
    var storesXattrs = false

    init(superBlock: SuperBlock, volume: Volume, readOnly: Bool = false) {
        self.superBlock = superBlock
        self.volume = volume
        self.readOnly = readOnly
    }

    /// Operations an observer hears about, after they succeeded.
    enum Operation {
        case create(parent: UInt32, name: [UInt8], ino: UInt32)
        case write(ino: UInt32, offset: UInt64, count: Int)
        case setattr(ino: UInt32)
        case unlink(parent: UInt32, name: [UInt8], ino: UInt32)
        case rename(parent: UInt32, name: [UInt8], newParent: UInt32, newName: [UInt8], ino: UInt32)
        case link(ino: UInt32, newParent: UInt32, newName: [UInt8])
        case openForWriting(ino: UInt32)
    }

    // MARK: Mounting

    /// Mounts the file system on the device behind the superblock
    /// capability: recovers the log, puts back what the operation journal
    /// holds from an instance that died, counts free space, reclaims orphans
    /// (keeps them instead when the kernel may still hold them: see
    /// `SuperBlock.kernelMayHoldInodes`; each is reclaimed at its FORGET).
    /// Read-only, it writes nothing: the log's last transaction is laid
    /// over the image in memory, and orphans stay.
    static func mount(_ superBlock: SuperBlock, knownFeatures: FeatureSet = .none,
                      reader: String = "xv6fs") throws -> Xv6FileSystem {
        let sb = try Volume.readSuperblock(superBlock.cache)
        var readOnly = try accessIsReadOnly(sb, superBlock, knownFeatures: knownFeatures, reader: reader)
        let volume = Volume(cache: superBlock.cache, superblock: sb, journal: superBlock.journal)
        if readOnly {
            let overlaid = try volume.log.recoverInMemory(superblock: sb)
            if overlaid > 0 {
                superBlock.log("xv6fs: read-only: the log's last committed transaction (\(overlaid) blocks) is served from memory, not written to the image")
            }
            if let journal = superBlock.journal, journal.pendingOperations > 0 {
                superBlock.log("xv6fs: read-only: \(journal.pendingOperations) operations in the operation journal are not put back")
            }
        } else {
            let replayed = try volume.log.recover(superblock: sb)
            if replayed > 0 { superBlock.log("xv6fs: log recovery replayed \(replayed) blocks") }
            // The replayed transaction may have set a feature bit (its first use).
            if replayed > 0, try Volume.readSuperblock(superBlock.cache).features != sb.features {
                _ = try accessIsReadOnly(try Volume.readSuperblock(superBlock.cache), superBlock,
                                         knownFeatures: knownFeatures, reader: reader)
            }
            let journaled = try volume.log.replayJournal(superblock: sb, report: superBlock.log)
            if journaled.blocks > 0 {
                superBlock.log("xv6fs: recovered \(journaled.blocks) blocks of \(journaled.operations) operations from the operation journal")
            }
        }
        // The log may have set feature bits (their first use): check again.
        let recovered = try Volume.readSuperblock(superBlock.cache)
        if recovered.features != sb.features {
            volume.features = recovered.features
            readOnly = try accessIsReadOnly(recovered, superBlock, knownFeatures: knownFeatures, reader: reader) || readOnly
        }
        try volume.blocks.countFree()
        let orphans = try volume.inodes.scan()
        let fs = Xv6FileSystem(superBlock: superBlock, volume: volume, readOnly: readOnly)
        guard try volume.inodes.get(Layout.rootInode).isDirectory else { throw Errno.EUCLEAN }
        let keep = superBlock.kernelMayHoldInodes || readOnly
        if !readOnly {
            try fs.lock.withLock {
                if !keep { for ino in orphans { try fs.reclaim(try volume.inodes.get(ino)) } }
                try volume.log.commit()
            }
        }
        if !orphans.isEmpty {
            superBlock.log(readOnly ? "xv6fs: read-only: kept \(orphans.count) orphan inodes"
                           : keep ? "xv6fs: kept \(orphans.count) orphan inodes the kernel may still hold (each is reclaimed when the kernel forgets it)"
                                : "xv6fs: reclaimed \(orphans.count) orphan inodes")
        }
        return fs
    }

    /// Whether this version must serve the image read-only: the host asks
    /// it, or the image has ro_compat features this version does not know
    /// (logged). Unknown incompat features refuse the image.
    static func accessIsReadOnly(_ sb: Superblock, _ superBlock: SuperBlock, knownFeatures: FeatureSet,
                                 reader: String) throws -> Bool {
        switch sb.features.support(knowing: knownFeatures) {
        case .refused(let unknown):
            throw UnsupportedFeatures(unknown: unknown, reader: reader)
        case .readOnly(let unknown):
            superBlock.log("xv6fs: serving read-only: the image uses ro_compat features \(reader) does not know "
                           + "(\(unknown.description)); writes fail with EROFS")
            return true
        case .readWrite:
            return superBlock.readOnly
        }
    }

    // MARK: Helpers (called with the lock held)

    private func inode(_ ino: InodeNumber) throws -> Inode {
        guard ino <= InodeNumber(UInt32.max) else { throw Errno.ENOENT }
        return try volume.inodes.get(UInt32(ino))
    }

    private func directory(_ ino: InodeNumber) throws -> Inode {
        let dir = try inode(ino)
        guard dir.isDirectory else { throw Errno.ENOTDIR }
        return dir
    }

    /// Runs one operation in the open transaction, and hands what it
    /// changed to the operation journal. A device error makes the file
    /// system refuse further changes.
    func transaction<R>(_ body: () throws -> R) throws -> R {
        guard !readOnly else { throw Errno.EROFS }
        guard !failed else { throw Errno.EIO }
        do {
            try volume.log.begin()
            let result: R
            do {
                result = try body()
            } catch let error as Errno where error != .EIO {
                try volume.log.end()  // failed and undone: consistent
                throw error
            } catch {
                volume.log.abandon()
                throw error
            }
            try volume.log.end()
            return result
        } catch let error as Errno {
            if error == .EIO { failed = true }
            throw error
        }
    }

    private func checkName(_ name: FileName) throws {
        let bytes = name.bytes
        guard bytes.count <= Layout.maxNameLength else { throw Errno.ENAMETOOLONG }
        guard !bytes.isEmpty, !bytes.contains(0x2F), !bytes.contains(0) else { throw Errno.EINVAL }
    }

    private static func isDotOrDotDot(_ bytes: [UInt8]) -> Bool {
        bytes == Volume.dot || bytes == Volume.dotDot
    }

    func attributes(_ inode: Inode) -> FileAttributes {
        let d = inode.disk
        return FileAttributes(ino: InodeNumber(inode.ino), size: d.size, blocks: d.blockCount * 8,
                              atime: d.atime, mtime: d.mtime, ctime: d.ctime, mode: d.mode, nlink: d.nlink,
                              uid: d.uid, gid: d.gid, rdev: d.rdev, blockSize: UInt32(Layout.blockSize))
    }

    /// A lookup-like answer: counts one kernel reference.
    private func entry(_ inode: Inode) -> Entry {
        references.lookedUp(InodeNumber(inode.ino))
        return Entry(attributes: attributes(inode), generation: UInt64(inode.disk.generation))
    }

    /// Frees an unlinked inode once nothing refers to it any more. When the
    /// kernel may hold references this instance never counted (a resumed
    /// session), counts reaching zero prove nothing: the inode stays an
    /// orphan until the kernel's FORGET (see `forget`).
    private func reclaimIfUnused(_ inode: Inode) throws {
        if inode.isOrphan && !references.isHeld(InodeNumber(inode.ino)) && !superBlock.kernelMayHoldInodes { try reclaim(inode) }
    }

    /// Frees an orphan's blocks, in as many transactions as that takes, then
    /// its inode.
    private func reclaim(_ inode: Inode) throws {
        guard !readOnly else { return }  // an orphan stays, for a writable mount to reclaim
        inode.directory = nil
        while true {
            let done = try transaction { () throws -> Bool in
                let result = try volume.freeTail(inode, from: 0)
                if result.done {
                    inode.disk.size = 0
                    try volume.freeXattrs(inode)
                    try volume.inodes.free(inode)
                } else {
                    inode.disk.size = min(inode.disk.size, result.lowestFreed * UInt64(Layout.blockSize))
                    try volume.inodes.update(inode)
                }
                return result.done
            }
            if done { return }
        }
    }

    /// Sets a regular file's size: growing leaves a hole, shrinking frees
    /// blocks from the end in as many transactions as it takes.
    private func truncate(_ inode: Inode, to size: UInt64, now: Timespec) throws {
        guard size <= volume.maxFileSize else { throw Errno.EFBIG }
        let bs = UInt64(Layout.blockSize)
        if size >= inode.disk.size {
            try transaction {
                // Earlier versions take a size past 4 GiB for damage, even
                // over a hole: the size alone uses `bigfile`.
                if size > Layout.maxFileSize { try volume.useFeature(.bigfile) }
                inode.disk.size = size
                inode.disk.mtime = now; inode.disk.ctime = now
                try volume.inodes.update(inode)
            }
            return
        }
        let first = (size + bs - 1) / bs
        var zeroTail = size % bs != 0
        while true {
            let done = try transaction { () throws -> Bool in
                if zeroTail {
                    // Bytes past the new end must read as zeroes if the file grows again.
                    let mapping = try volume.map(inode, size / bs, allocate: false)
                    let block = mapping.block
                    if block != 0 && !mapping.unwritten {
                        let from = Int(size % bs)
                        try volume.cache.withMutableBlock(UInt64(block)) { data in
                            UnsafeMutableRawBufferPointer(rebasing: data[from...]).initializeMemory(as: UInt8.self, repeating: 0)
                        }
                        volume.log.record(UInt64(block))
                    }
                    zeroTail = false
                }
                let result = try volume.freeTail(inode, from: first)
                inode.disk.size = result.done
                    ? size : max(size, min(inode.disk.size, result.lowestFreed * bs))
                inode.disk.mtime = now; inode.disk.ctime = now
                try volume.inodes.update(inode)
                return result.done
            }
            if done { return }
        }
    }

    /// Creates an inode of `mode` named `name` in `parent`; `fill` writes
    /// what the new inode holds (a directory's first block, a link target).
    func makeNode(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32, rdev: UInt32 = 0,
                          fill: (Inode) throws -> Void = { _ in }) throws -> Inode {
        try checkName(name)
        return try transaction {
            let dir = try directory(parent)
            guard dir.disk.nlink > 0 else { throw Errno.ENOENT }  // removed while in use
            guard try volume.lookup(dir, name.bytes) == nil else { throw Errno.EEXIST }
            let isDirectory = mode & FileMode.typeMask == FileMode.directory
            if isDirectory && dir.disk.nlink >= Layout.maxLinks { throw Errno.EMLINK }
            let now = currentTime()
            let node = try volume.inodes.allocate(mode: mode, ctx: ctx, now: now)
            node.disk.rdev = rdev
            do {
                if isDirectory {
                    node.disk.nlink = 2
                    try volume.initializeDirectory(node, parent: dir.ino)
                }
                try fill(node)
                try inheritDefaultACL(from: dir, to: node)
                try volume.addEntry(dir, name.bytes, ino: node.ino, mode: mode)
            } catch {
                // Undo within the same transaction: the inode never existed.
                _ = try? volume.freeTail(node, from: 0)
                try? volume.freeXattrs(node)
                try? volume.inodes.free(node)
                throw error
            }
            try volume.inodes.update(node)
            if isDirectory { dir.disk.nlink += 1 }
            dir.disk.mtime = now; dir.disk.ctime = now
            try volume.inodes.update(dir)
            return node
        }
    }

    // MARK: FileSystem: lifecycle

    public func initialize() throws {}

    public func destroy() throws {
        try lock.withLock {
            guard !readOnly else { return }
            guard !failed else { throw Errno.EIO }
            try volume.log.commit()
            try volume.cache.device.flush()
        }
    }

    /// A commit that fails leaves the disk behind memory, as a failed fsync
    /// does: the file system takes no further change (see `failed`).
    public func sync() throws {
        try lock.withLock {
            guard !readOnly else { return }
            guard !failed else { throw Errno.EIO }
            do { try volume.log.commit() } catch { failed = true; throw Errno.EIO }
        }
    }

    // MARK: FileSystem: names and attributes

    public func lookup(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws -> Entry {
        try lock.withLock {
            guard name.bytes.count <= Layout.maxNameLength else { throw Errno.ENAMETOOLONG }
            let dir = try directory(parent)
            guard let ino = try volume.lookup(dir, name.bytes) else { throw Errno.ENOENT }
            return entry(try volume.inodes.get(ino))
        }
    }

    public func forget(ino: InodeNumber, count: UInt64) {
        lock.withLock {
            let held = references.forgot(ino, count: count)
            guard let node = try? inode(ino) else { return }
            if superBlock.kernelMayHoldInodes && node.isOrphan && held.lookups == 0 {
                // The kernel forgets an inode when it evicts it, with its
                // whole lookup count (ours is part of it), and evicts it only
                // once no file is open on it: every open file has been
                // released, though a RELEASE may still be on its way. So
                // nobody holds it any more. Handles of ours on it go too:
                // their late RELEASE must not touch a reused inode number.
                if held.opens > 0 { references.closeAll(on: ino) }
                do { try reclaim(node) } catch { superBlock.report("inode not reclaimed", error, detail: "inode \(ino)") }
                return
            }
            guard !held.isHeld else { return }
            if node.isOrphan {
                do { try reclaim(node) } catch { superBlock.report("inode not reclaimed", error, detail: "inode \(ino)") }
            } else if !node.isDirectory {
                volume.inodes.evict(node)
            }
        }
    }

    public func getattr(_ ctx: RequestContext, ino: InodeNumber) throws -> FileAttributes {
        try lock.withLock { attributes(try inode(ino)) }
    }

    public func setattr(_ ctx: RequestContext, ino: InodeNumber, _ changes: SetAttributes,
                        handle: FileHandle?) throws -> FileAttributes {
        try lock.withLock {
            let node = try inode(ino)
            let now = currentTime()
            if let size = changes.size {
                if node.isDirectory { throw Errno.EISDIR }
                guard node.disk.isRegular else { throw Errno.EINVAL }
                try truncate(node, to: size, now: now)
            }
            try transaction {
                if let mode = changes.mode {
                    node.disk.mode = (node.disk.mode & FileMode.typeMask) | (mode & FileMode.permissionMask)
                    try chmodAccessACL(node)
                }
                if let uid = changes.uid { node.disk.uid = uid }
                if let gid = changes.gid { node.disk.gid = gid }
                switch changes.atime {
                case .now?: node.disk.atime = now
                case .at(let t)?: node.disk.atime = t
                case nil: break
                }
                switch changes.mtime {
                case .now?: node.disk.mtime = now
                case .at(let t)?: node.disk.mtime = t
                case nil: break
                }
                node.disk.ctime = changes.ctime ?? now
                try volume.inodes.update(node)
            }
            observer?(ctx, .setattr(ino: node.ino))
            return attributes(node)
        }
    }

    public func readlink(_ ctx: RequestContext, ino: InodeNumber) throws -> [UInt8] {
        try lock.withLock {
            let node = try inode(ino)
            guard node.disk.isSymlink else { throw Errno.EINVAL }
            guard node.disk.size <= UInt64(Layout.maxSymlinkLength) else { throw Errno.EUCLEAN }
            var target = [UInt8](repeating: 0, count: Int(node.disk.size))
            let count = try target.withUnsafeMutableBytes { try volume.read(node, offset: 0, into: $0) }
            return Array(target[0..<count])
        }
    }

    public func mknod(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
                      rdev: UInt32) throws -> Entry {
        switch mode & FileMode.typeMask {
        case FileMode.regular, FileMode.fifo, FileMode.socket, FileMode.characterDevice, FileMode.blockDevice: break
        case 0: return try mknod(ctx, parent: parent, name: name, mode: mode | FileMode.regular, rdev: rdev)
        default: throw Errno.EINVAL
        }
        return try lock.withLock {
            let node = try makeNode(ctx, parent: parent, name: name, mode: mode, rdev: rdev)
            observer?(ctx, .create(parent: UInt32(parent), name: name.bytes, ino: node.ino))
            return entry(node)
        }
    }

    public func mkdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32) throws -> Entry {
        try lock.withLock {
            let node = try makeNode(ctx, parent: parent, name: name,
                                    mode: FileMode.directory | (mode & FileMode.permissionMask))
            observer?(ctx, .create(parent: UInt32(parent), name: name.bytes, ino: node.ino))
            return entry(node)
        }
    }

    public func symlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName, target: [UInt8]) throws -> Entry {
        guard !target.isEmpty else { throw Errno.ENOENT }
        guard target.count <= Layout.maxSymlinkLength else { throw Errno.ENAMETOOLONG }
        return try lock.withLock {
            let node = try makeNode(ctx, parent: parent, name: name, mode: FileMode.symlink | 0o777) { node in
                _ = try target.withUnsafeBytes {
                    try volume.writeChunk(node, offset: 0, data: $0, now: node.disk.mtime)
                }
            }
            observer?(ctx, .create(parent: UInt32(parent), name: name.bytes, ino: node.ino))
            return entry(node)
        }
    }

    public func unlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws {
        try checkName(name)
        try lock.withLock {
            let node = try transaction { () throws -> Inode in
                let dir = try directory(parent)
                guard let ino = try volume.lookup(dir, name.bytes) else { throw Errno.ENOENT }
                let node = try volume.inodes.get(ino)
                guard !node.isDirectory else { throw Errno.EISDIR }
                let now = currentTime()
                try volume.removeEntry(dir, name.bytes)
                node.disk.dropLink()
                node.disk.ctime = now
                try volume.inodes.update(node)
                dir.disk.mtime = now; dir.disk.ctime = now
                try volume.inodes.update(dir)
                return node
            }
            observer?(ctx, .unlink(parent: UInt32(parent), name: name.bytes, ino: node.ino))
            try reclaimIfUnused(node)
        }
    }

    public func rmdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws {
        try checkName(name)
        if name.bytes == Volume.dot { throw Errno.EINVAL }
        if name.bytes == Volume.dotDot { throw Errno.ENOTEMPTY }
        try lock.withLock {
            let node = try transaction { () throws -> Inode in
                let dir = try directory(parent)
                guard let ino = try volume.lookup(dir, name.bytes) else { throw Errno.ENOENT }
                let node = try volume.inodes.get(ino)
                guard node.isDirectory else { throw Errno.ENOTDIR }
                guard try volume.isEmptyDirectory(node) else { throw Errno.ENOTEMPTY }
                let now = currentTime()
                try volume.removeEntry(dir, name.bytes)
                node.disk.nlink = 0
                node.disk.ctime = now
                try volume.inodes.update(node)
                dir.disk.dropLink()
                dir.disk.mtime = now; dir.disk.ctime = now
                try volume.inodes.update(dir)
                return node
            }
            observer?(ctx, .unlink(parent: UInt32(parent), name: name.bytes, ino: node.ino))
            try reclaimIfUnused(node)
        }
    }

    /// True when `ino` is `ancestor` or lies below it: found by walking ".."
    /// up to the root (bounded, in case the tree is corrupt).
    private func isWithin(_ ino: UInt32, _ ancestor: UInt32) throws -> Bool {
        var current = ino
        for _ in 0..<volume.sb.inodeCount {
            if current == ancestor { return true }
            if current == Layout.rootInode { return false }
            guard let parent = try volume.lookup(try volume.inodes.get(current), Volume.dotDot) else { throw Errno.EUCLEAN }
            current = parent
        }
        throw Errno.EUCLEAN
    }

    public func rename(_ ctx: RequestContext, parent: InodeNumber, name: FileName, newParent: InodeNumber,
                       newName: FileName, flags: RenameFlags) throws {
        guard flags.isSubset(of: [.noReplace, .exchange]) else { throw Errno.EINVAL }
        if flags.contains(.exchange) { throw Errno.EINVAL }
        try checkName(name)
        try checkName(newName)
        if Self.isDotOrDotDot(name.bytes) || Self.isDotOrDotDot(newName.bytes) { throw Errno.EINVAL }
        try lock.withLock {
            let result = try transaction { () throws -> (Inode, Inode?)? in
                let from = try directory(parent)
                let to = try directory(newParent)
                guard to.disk.nlink > 0 else { throw Errno.ENOENT }
                guard let ino = try volume.lookup(from, name.bytes) else { throw Errno.ENOENT }
                let node = try volume.inodes.get(ino)
                // As Linux checks it: moving a directory below itself comes first.
                let moved = node.isDirectory && from !== to
                if moved, try isWithin(to.ino, node.ino) { throw Errno.EINVAL }
                var target: Inode?
                if let existing = try volume.lookup(to, newName.bytes) {
                    if existing == ino { return nil }  // two names of one inode: nothing to do
                    if flags.contains(.noReplace) { throw Errno.EEXIST }
                    let t = try volume.inodes.get(existing)
                    if node.isDirectory {
                        guard t.isDirectory else { throw Errno.ENOTDIR }
                        guard try volume.isEmptyDirectory(t) else { throw Errno.ENOTEMPTY }
                    } else if t.isDirectory {
                        throw Errno.EISDIR
                    }
                    target = t
                }
                if moved && target == nil && to.disk.nlink >= Layout.maxLinks { throw Errno.EMLINK }
                let now = currentTime()
                if let t = target {
                    try volume.replaceEntry(to, newName.bytes, ino: ino, mode: node.disk.mode)
                    if t.isDirectory {
                        t.disk.nlink = 0
                        to.disk.dropLink()
                    } else {
                        t.disk.dropLink()
                    }
                    t.disk.ctime = now
                    try volume.inodes.update(t)
                } else {
                    try volume.addEntry(to, newName.bytes, ino: ino, mode: node.disk.mode)
                }
                try volume.removeEntry(from, name.bytes)
                if moved {
                    try volume.replaceEntry(node, Volume.dotDot, ino: to.ino, mode: FileMode.directory)
                    from.disk.dropLink()
                    to.disk.nlink += 1
                }
                node.disk.ctime = now
                try volume.inodes.update(node)
                from.disk.mtime = now; from.disk.ctime = now
                try volume.inodes.update(from)
                if to !== from {
                    to.disk.mtime = now; to.disk.ctime = now
                    try volume.inodes.update(to)
                }
                return (node, target)
            }
            guard let (node, target) = result else { return }
            observer?(ctx, .rename(parent: UInt32(parent), name: name.bytes, newParent: UInt32(newParent),
                              newName: newName.bytes, ino: node.ino))
            if let t = target { try reclaimIfUnused(t) }
        }
    }

    public func link(_ ctx: RequestContext, ino: InodeNumber, newParent: InodeNumber, newName: FileName) throws -> Entry {
        try checkName(newName)
        return try lock.withLock {
            let node = try transaction { () throws -> Inode in
                let node = try inode(ino)
                guard !node.isDirectory else { throw Errno.EPERM }
                guard node.disk.nlink < Layout.maxLinks else { throw Errno.EMLINK }
                let dir = try directory(newParent)
                guard dir.disk.nlink > 0 else { throw Errno.ENOENT }
                guard try volume.lookup(dir, newName.bytes) == nil else { throw Errno.EEXIST }
                let now = currentTime()
                try volume.addEntry(dir, newName.bytes, ino: node.ino, mode: node.disk.mode)
                node.disk.nlink += 1
                node.disk.ctime = now
                try volume.inodes.update(node)
                dir.disk.mtime = now; dir.disk.ctime = now
                try volume.inodes.update(dir)
                return node
            }
            observer?(ctx, .link(ino: node.ino, newParent: UInt32(newParent), newName: newName.bytes))
            return entry(node)
        }
    }

    // MARK: FileSystem: files

    private func openHandle(_ node: Inode, flags: Int32, isDirectory: Bool, by ctx: RequestContext) -> FileHandle {
        references.open(.init(ino: InodeNumber(node.ino), flags: flags, isDirectory: isDirectory, opener: ctx))
    }

    private static func writable(_ flags: Int32) -> Bool {
        let access = flags & OpenFlags.accessMask
        return access == OpenFlags.writeOnly || access == OpenFlags.readWrite
    }

    public func open(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> OpenReply {
        try lock.withLock {
            let node = try inode(ino)
            if node.isDirectory && Self.writable(flags) { throw Errno.EISDIR }
            // As a read-only kernel mount refuses it: with the kernel's
            // writeback cache, a write would otherwise fail only at flush.
            if readOnly && Self.writable(flags) { throw Errno.EROFS }
            if Self.writable(flags) && flags & OpenFlags.truncate != 0 && node.disk.isRegular {
                try truncate(node, to: 0, now: currentTime())
            }
            if Self.writable(flags) { observer?(ctx, .openForWriting(ino: node.ino)) }
            return OpenReply(handle: openHandle(node, flags: flags, isDirectory: false, by: ctx))
        }
    }

    public func read(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
                     into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try lock.withLock {
            let node = try inode(ino)
            if node.isDirectory { throw Errno.EISDIR }
            return try volume.read(node, offset: offset, into: buffer)
        }
    }

    public func write(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
                      data: UnsafeRawBufferPointer) throws -> Int {
        try lock.withLock {
            let node = try inode(ino)
            if node.isDirectory { throw Errno.EISDIR }
            guard node.disk.isRegular else { throw Errno.EINVAL }
            // At `offset`, whatever the handle's flags: the kernel places
            // appends itself, and with its writeback cache sends whole
            // cached pages back at their offsets (Docs/module-sdk.md, "Writes").
            let maxFileSize = volume.maxFileSize
            guard offset < maxFileSize else { throw data.isEmpty ? Errno.EINVAL : Errno.EFBIG }
            let total = Int(min(UInt64(data.count), maxFileSize - offset))
            var done = 0
            let now = currentTime()
            while done < total {
                do {
                    done += try transaction {
                        try volume.writeChunk(node, offset: offset + UInt64(done),
                                              data: UnsafeRawBufferPointer(rebasing: data[done..<total]), now: now)
                    }
                } catch {
                    // Report what reached the file; the error shows on the next call.
                    if done > 0 { break }
                    throw error
                }
            }
            if done > 0 {
                let writer = ctx.pid == 0 ? references.file(handle)?.opener ?? ctx : ctx
                observer?(writer, .write(ino: node.ino, offset: offset, count: done))
            }
            return done
        }
    }

    // MARK: FileSystem: preallocation and holes (version 3)

    /// fallocate(2)'s mode bits.
    public enum FallocateMode {
        public static let keepSize: Int32 = 0x01
        public static let punchHole: Int32 = 0x02
        public static let zeroRange: Int32 = 0x10
    }

    /// lseek(2)'s whence values the kernel passes on.
    public enum SeekWhence {
        public static let data: Int32 = 3
        public static let hole: Int32 = 4
    }

    /// Mode 0 and KEEP_SIZE preallocate, PUNCH_HOLE|KEEP_SIZE frees,
    /// ZERO_RANGE (with or without KEEP_SIZE) zeroes; nothing else.
    /// Preallocated blocks are unwritten: they read as zeroes and no zeroes
    /// are written. Large ranges take several transactions (`allocateRange`,
    /// `punchHole`).
    public func fallocate(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, mode: Int32, offset: UInt64,
                          length: UInt64) throws {
        guard dataFeatures else { throw Errno.EOPNOTSUPP }
        let keepSize = mode & FallocateMode.keepSize != 0
        let kind = mode & ~FallocateMode.keepSize
        guard kind == 0 || kind == FallocateMode.zeroRange || (kind == FallocateMode.punchHole && keepSize) else {
            throw Errno.EOPNOTSUPP
        }
        guard length > 0 else { throw Errno.EINVAL }
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= volume.maxFileSize else { throw Errno.EFBIG }
        try lock.withLock {
            let node = try inode(ino)
            if node.isDirectory { throw Errno.EISDIR }
            guard node.disk.isRegular else { throw Errno(19) }  // ENODEV, as fallocate(2) says
            let now = currentTime()
            if kind == FallocateMode.punchHole {
                try punchHole(node, offset: offset, end: end, now: now)
            } else {
                // The unwritten mark is bit 31 of a block number: free only below 2^31 blocks.
                guard volume.sb.totalBlocks <= Layout.maxUnwrittenImageBlocks else { throw Errno.EOPNOTSUPP }
                try allocateRange(node, offset: offset, end: end, zeroing: kind == FallocateMode.zeroRange,
                                  keepSize: keepSize, now: now)
            }
            observer?(ctx, .write(ino: node.ino, offset: offset, count: Int(clamping: length)))
        }
    }

    /// Preallocates (or, `zeroing`, zeroes) bytes `offset ..< end`, a
    /// bounded number of blocks per transaction. A crash part way leaves
    /// a consistent file: the blocks done so far stay allocated and
    /// unwritten (reading as zeroes), and without KEEP_SIZE the size covers
    /// exactly them (each transaction grows it over its own blocks), so no
    /// block lies past the size. With KEEP_SIZE the first transaction sets
    /// `keep_size`, which makes blocks past the size legal. Nothing is
    /// undone, as on ext4: the caller sees the error or the crash and may
    /// truncate.
    private func allocateRange(_ node: Inode, offset: UInt64, end: UInt64, zeroing: Bool, keepSize: Bool,
                               now: Timespec) throws {
        let bs = UInt64(Layout.blockSize)
        // ZERO_RANGE turns whole blocks unwritten and zeroes the partial
        // ones at the edges; mode 0 allocates every block it touches.
        var next = zeroing ? (offset + bs - 1) / bs : offset / bs
        let stop = zeroing ? end / bs : (end + bs - 1) / bs
        var edgesZeroed = !zeroing
        while true {
            let done = try transaction { () throws -> Bool in
                if keepSize && max(stop, next) * bs > (node.disk.size + bs - 1) / bs * bs {
                    try volume.useFeature(.keepSize)
                }
                if !edgesZeroed {
                    try zeroEdges(node, offset: offset, end: end)
                    edgesZeroed = true
                }
                next = try volume.preallocate(node, from: next, to: max(next, stop), zeroing: zeroing,
                                              growSizeTo: keepSize ? nil : end, now: now)
                return next >= stop
            }
            if done { return }
        }
    }

    /// PUNCH_HOLE: zeroes the partial blocks at the edges, then frees the
    /// whole blocks in between, a bounded number per transaction (a crash
    /// part way leaves some of them freed: a consistent file). The size
    /// stays.
    private func punchHole(_ node: Inode, offset: UInt64, end: UInt64, now: Timespec) throws {
        let bs = UInt64(Layout.blockSize)
        var next = (offset + bs - 1) / bs
        let stop = end / bs
        var edgesZeroed = false
        while true {
            let done = try transaction { () throws -> Bool in
                if !edgesZeroed {
                    try zeroEdges(node, offset: offset, end: end)
                    edgesZeroed = true
                }
                if next < stop { next = try volume.punch(node, from: next, to: stop) }
                node.disk.mtime = now; node.disk.ctime = now
                try volume.inodes.update(node)
                return next >= stop
            }
            if done { return }
        }
    }

    /// Zeroes the bytes of `offset ..< end` that lie in partial blocks.
    private func zeroEdges(_ node: Inode, offset: UInt64, end: UInt64) throws {
        let bs = UInt64(Layout.blockSize)
        let headEnd = (offset + bs - 1) / bs * bs, tailStart = end / bs * bs
        if offset % bs != 0 { try volume.zeroBytes(node, from: offset, to: min(end, headEnd)) }
        if end % bs != 0 && tailStart >= headEnd { try volume.zeroBytes(node, from: tailStart, to: end) }
    }

    /// SEEK_DATA and SEEK_HOLE over the block map. Unwritten blocks count
    /// as holes, as ext4 reports them (it has no dirty pages here: a write
    /// turns them written at once). Past the size: ENXIO, as lseek(2) says;
    /// the size is a hole.
    public func seek(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
                     whence: Int32) throws -> UInt64 {
        guard dataFeatures else { throw Errno.ENOSYS }
        guard whence == SeekWhence.data || whence == SeekWhence.hole else { throw Errno.EINVAL }
        return try lock.withLock {
            let node = try inode(ino)
            let size = node.disk.size
            guard offset < size else { throw Errno.ENXIO }
            let bs = UInt64(Layout.blockSize)
            let sizeBlocks = (size + bs - 1) / bs
            if whence == SeekWhence.data {
                guard let n = try volume.nextMapped(node, from: offset / bs, before: sizeBlocks, countUnwritten: false)
                else { throw Errno.ENXIO }
                return max(offset, n * bs)
            }
            let n = try volume.nextHole(node, from: offset / bs, before: sizeBlocks) ?? sizeBlocks
            return min(size, max(offset, n * bs))
        }
    }

    private func closeHandle(_ handle: FileHandle) throws {
        guard let (open, _) = references.close(handle) else { throw Errno.EBADF }
        guard let node = try? inode(open.ino) else { return }
        try reclaimIfUnused(node)
    }

    public func release(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle) throws {
        try lock.withLock { try closeHandle(handle) }
    }

    public func fsync(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, dataOnly: Bool) throws {
        try lock.withLock {
            guard !failed else { throw Errno.EIO }
            do { try volume.log.commit() } catch { failed = true; throw Errno.EIO }
        }
    }

    // MARK: FileSystem: directories

    public func opendir(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> FileHandle {
        try lock.withLock { openHandle(try directory(ino), flags: flags, isDirectory: true, by: ctx) }
    }

    public func readdir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64, plus: Bool,
                        _ emit: (DirectoryEntry) -> Bool) throws {
        try lock.withLock {
            let dir = try directory(ino)
            try volume.forEachEntry(dir, from: offset) { position, child, type, name in
                var item = DirectoryEntry(ino: InodeNumber(child), nextOffset: position + 1,
                                          type: UInt32(type) << 12, name: FileName(name))
                let counted = plus && !Self.isDotOrDotDot(name)
                if counted {
                    let node = try volume.inodes.get(child)
                    item.entry = Entry(attributes: attributes(node), generation: UInt64(node.disk.generation))
                }
                guard emit(item) else { return false }
                if counted { references.lookedUp(InodeNumber(child)) }
                return true
            }
        }
    }

    public func releasedir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle) throws {
        try lock.withLock { try closeHandle(handle) }
    }

    public func fsyncdir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, dataOnly: Bool) throws {
        try fsync(ctx, ino: ino, handle: handle, dataOnly: dataOnly)
    }

    public func statfs(_ ctx: RequestContext, ino: InodeNumber) throws -> FileSystemStats {
        lock.withLock {
            let sb = volume.sb
            return FileSystemStats(blockSize: UInt32(Layout.blockSize), blocks: sb.totalBlocks,
                                   freeBlocks: volume.blocks.freeCount, availableBlocks: volume.blocks.available,
                                   files: UInt64(sb.inodeCount - 1), freeFiles: volume.inodes.freeCount,
                                   nameMax: UInt32(Layout.maxNameLength))
        }
    }

    public func create(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
                       flags: Int32) throws -> (Entry, OpenReply) {
        try lock.withLock {
            let node = try makeNode(ctx, parent: parent, name: name,
                                    mode: FileMode.regular | (mode & FileMode.permissionMask))
            observer?(ctx, .create(parent: UInt32(parent), name: name.bytes, ino: node.ino))
            return (entry(node), OpenReply(handle: openHandle(node, flags: flags, isDirectory: false, by: ctx)))
        }
    }

    public func access(_ ctx: RequestContext, ino: InodeNumber, mask: Int32) throws {
        try lock.withLock {
            let d = try inode(ino).disk
            guard mask != AccessMask.exists else { return }
            if ctx.uid == 0 {
                // Root may do anything but execute a file nobody may execute.
                if mask & AccessMask.execute != 0 && !d.isDirectory && d.mode & 0o111 == 0 { throw Errno.EACCES }
                return
            }
            let shift: UInt32 = ctx.uid == d.uid ? 6 : ctx.gid == d.gid ? 3 : 0
            let granted = Int32((d.mode >> shift) & 7)
            guard granted & mask == mask else { throw Errno.EACCES }
        }
    }

    public func exportState(format: StateFormat) throws -> ExportedState {
        try lock.withLock {
            guard format.name == Xv6Module.fileSystemName, (1...4).contains(format.version) else { throw Errno.EINVAL }
            return ExportedState(format: format, bytes: HandoverState(self, format: format).encoded(format: format))
        }
    }
}
