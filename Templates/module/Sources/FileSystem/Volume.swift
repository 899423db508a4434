import BentoKit
import Glibc

/// A mounted instance: the file operations, each under one lock, each
/// written through to the device as it ends (`Storage.writeThrough`).
final class Volume: FileSystem, @unchecked Sendable {
    let superBlock: SuperBlock
    let storage: Storage
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init(superBlock: SuperBlock, storage: Storage) {
        self.superBlock = superBlock
        self.storage = storage
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs an operation under the lock; what it changed goes to the device
    /// even when it fails part way (the cache must not keep it alone).
    private func locked<R>(_ body: () throws -> R) throws -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        do {
            let result = try body()
            try storage.writeThrough()
            return result
        } catch {
            try? storage.writeThrough()
            throw error
        }
    }

    // MARK: Lifecycle

    func initialize() throws {}
    func sync() throws { try locked { try storage.cache.device.flush() } }
    func destroy() throws { try sync() }

    // MARK: Attributes

    private func attributes(_ ino: InodeNumber, _ inode: Inode) -> FileAttributes {
        FileAttributes(ino: ino, size: inode.size, blocks: allocatedSectors(inode), atime: inode.atime,
                       mtime: inode.mtime, ctime: inode.ctime, mode: inode.mode, nlink: inode.nlink,
                       uid: inode.uid, gid: inode.gid, rdev: inode.rdev, blockSize: UInt32(Layout.blockSize))
    }

    /// st_blocks, roughly: the size rounded up to blocks (holes counted).
    private func allocatedSectors(_ inode: Inode) -> UInt64 {
        (inode.size + UInt64(Layout.blockSize) - 1) / UInt64(Layout.blockSize) * UInt64(Layout.blockSize / 512)
    }

    /// An entry for the kernel: one lookup reference.
    private func entry(_ ino: InodeNumber, _ inode: Inode) -> Entry {
        superBlock.references.lookedUp(ino)
        return Entry(attributes: attributes(ino, inode), generation: UInt64(inode.generation))
    }

    private func directory(_ ino: InodeNumber) throws -> Inode {
        let dir = try storage.usedInode(ino)
        guard dir.isDirectory else { throw Errno.ENOTDIR }
        return dir
    }

    func getattr(_ ctx: RequestContext, ino: InodeNumber) throws -> FileAttributes {
        try locked { attributes(ino, try storage.usedInode(ino)) }
    }

    func setattr(_ ctx: RequestContext, ino: InodeNumber, _ changes: SetAttributes,
                 handle: FileHandle?) throws -> FileAttributes {
        try locked {
            var inode = try storage.usedInode(ino)
            let now = currentTime()
            if let mode = changes.mode { inode.mode = inode.type | (mode & FileMode.permissionMask) }
            if let uid = changes.uid { inode.uid = uid }
            if let gid = changes.gid { inode.gid = gid }
            if let size = changes.size {
                guard !inode.isDirectory else { throw Errno.EISDIR }
                guard inode.isRegular else { throw Errno.EINVAL }
                guard size <= Layout.maxFileBlocks * UInt64(Layout.blockSize) else { throw Errno.EFBIG }
                try storage.truncate(&inode, to: size)
                inode.mtime = now
            }
            if let atime = changes.atime { inode.atime = time(atime, now) }
            if let mtime = changes.mtime { inode.mtime = time(mtime, now) }
            inode.ctime = changes.ctime ?? now
            try storage.save(ino, inode)
            return attributes(ino, inode)
        }
    }

    private func time(_ time: SetAttributes.Time, _ now: Timespec) -> Timespec {
        switch time {
        case .now: now
        case .at(let t): t
        }
    }

    func access(_ ctx: RequestContext, ino: InodeNumber, mask: Int32) throws {
        // The host mounts with default_permissions: the kernel checks modes.
        _ = try locked { try storage.usedInode(ino) }
    }

    func statfs(_ ctx: RequestContext, ino: InodeNumber) throws -> FileSystemStats {
        try locked {
            let g = storage.geometry
            return FileSystemStats(blockSize: UInt32(Layout.blockSize), blocks: g.blockCount,
                                   freeBlocks: storage.freeBlocks, availableBlocks: storage.freeBlocks,
                                   files: g.inodeCount - 1, freeFiles: storage.freeInodes,
                                   nameMax: UInt32(Layout.nameMax))
        }
    }

    // No extended attributes: ENOSYS makes the kernel stop asking.
    func getxattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName) throws -> [UInt8] { throw Errno.ENOSYS }
    func listxattr(_ ctx: RequestContext, ino: InodeNumber) throws -> [FileName] { throw Errno.ENOSYS }

    // MARK: Names

    func lookup(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws -> Entry {
        try locked {
            var dir = try directory(parent)
            if name == "." { return entry(parent, dir) }
            if name == ".." { return entry(InodeNumber(dir.parent), try storage.usedInode(InodeNumber(dir.parent))) }
            guard let (_, record) = try storage.find(&dir, name) else { throw Errno.ENOENT }
            return entry(InodeNumber(record.ino), try storage.usedInode(InodeNumber(record.ino)))
        }
    }

    func forget(ino: InodeNumber, count: UInt64) {
        let held = superBlock.references.forgot(ino, count: count)
        if !held.isHeld {
            do { try locked { try reclaimIfOrphan(ino) } } catch {
                superBlock.report("orphan inode not reclaimed", error, detail: "inode \(ino)")
            }
        }
    }

    /// Frees an inode no name and no kernel reference points to any more.
    private func reclaimIfOrphan(_ ino: InodeNumber) throws {
        guard !superBlock.references.isHeld(ino) else { return }
        var inode = try storage.inode(ino)
        if inode.mode != 0 && inode.nlink == 0 { try storage.freeInode(ino, &inode) }
    }

    /// Makes a new inode named `name` in `parent`.
    private func make(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
                      fill: (InodeNumber, inout Inode) throws -> Void = { _, _ in }) throws -> (InodeNumber, Inode) {
        guard name.bytes.count <= Layout.nameMax else { throw Errno.ENAMETOOLONG }
        guard name != ".", name != "..", !name.bytes.isEmpty else { throw Errno.EEXIST }
        var dir = try directory(parent)
        guard dir.nlink > 0 else { throw Errno.ENOENT }   // removed while open
        guard try storage.find(&dir, name) == nil else { throw Errno.EEXIST }
        let now = currentTime()
        var (ino, inode) = try storage.allocateInode(mode: mode, ctx: ctx, now: now)
        do {
            inode.nlink = 1
            try fill(ino, &inode)
            try storage.addRecord(&dir, DirectoryRecord(ino: UInt32(ino), type: inode.type, name: name.bytes))
        } catch {
            try? storage.freeInode(ino, &inode)   // nothing names it
            throw error
        }
        try storage.save(ino, inode)
        dir.mtime = now; dir.ctime = now
        if inode.isDirectory { dir.nlink += 1 }
        try storage.save(parent, dir)
        return (ino, inode)
    }

    func mknod(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
               rdev: UInt32) throws -> Entry {
        try locked {
            let (ino, inode) = try make(ctx, parent: parent, name: name, mode: mode) { _, inode in inode.rdev = rdev }
            return entry(ino, inode)
        }
    }

    func mkdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32) throws -> Entry {
        try locked {
            let (ino, inode) = try make(ctx, parent: parent, name: name,
                                        mode: FileMode.directory | (mode & FileMode.permissionMask)) { _, inode in
                inode.nlink = 2
                inode.parent = UInt32(parent)
            }
            return entry(ino, inode)
        }
    }

    func symlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName, target: [UInt8]) throws -> Entry {
        guard target.count < Layout.blockSize else { throw Errno.ENAMETOOLONG }
        return try locked {
            let (ino, inode) = try make(ctx, parent: parent, name: name, mode: FileMode.symlink | 0o777) { _, inode in
                _ = try target.withUnsafeBytes { try storage.writeData(&inode, at: 0, from: $0) }
            }
            return entry(ino, inode)
        }
    }

    func readlink(_ ctx: RequestContext, ino: InodeNumber) throws -> [UInt8] {
        try locked {
            var inode = try storage.usedInode(ino)
            guard inode.type == FileMode.symlink else { throw Errno.EINVAL }
            var target = [UInt8](repeating: 0, count: Int(inode.size))
            _ = try target.withUnsafeMutableBytes { try storage.readData(&inode, at: 0, into: $0) }
            return target
        }
    }

    func link(_ ctx: RequestContext, ino: InodeNumber, newParent: InodeNumber, newName: FileName) throws -> Entry {
        try locked {
            guard newName.bytes.count <= Layout.nameMax else { throw Errno.ENAMETOOLONG }
            var inode = try storage.usedInode(ino)
            guard !inode.isDirectory else { throw Errno.EPERM }
            guard inode.nlink < UInt32.max else { throw Errno.EMLINK }
            var dir = try directory(newParent)
            guard try storage.find(&dir, newName) == nil else { throw Errno.EEXIST }
            try storage.addRecord(&dir, DirectoryRecord(ino: UInt32(ino), type: inode.type, name: newName.bytes))
            let now = currentTime()
            dir.mtime = now; dir.ctime = now
            try storage.save(newParent, dir)
            inode.nlink += 1
            inode.ctime = now
            try storage.save(ino, inode)
            return entry(ino, inode)
        }
    }

    func unlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws {
        try locked { try remove(parent: parent, name: name, directory: false) }
    }

    func rmdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws {
        try locked { try remove(parent: parent, name: name, directory: true) }
    }

    private func remove(parent: InodeNumber, name: FileName, directory wantDirectory: Bool) throws {
        if wantDirectory && name == "." { throw Errno.EINVAL }
        if wantDirectory && name == ".." { throw Errno.ENOTEMPTY }
        var dir = try directory(parent)
        guard let (slot, record) = try storage.find(&dir, name) else { throw Errno.ENOENT }
        let ino = InodeNumber(record.ino)
        var inode = try storage.usedInode(ino)
        if wantDirectory {
            guard inode.isDirectory else { throw Errno.ENOTDIR }
            guard try storage.isEmptyDirectory(&inode) else { throw Errno.ENOTEMPTY }
        } else if inode.isDirectory {
            throw Errno.EISDIR
        }
        try storage.removeRecord(&dir, slot: slot)
        let now = currentTime()
        dir.mtime = now; dir.ctime = now
        if inode.isDirectory { dir.nlink -= 1 }
        try storage.save(parent, dir)
        try dropLink(ino, &inode, now: now)
    }

    /// One name fewer for `ino`; freed now if that was the last and the
    /// kernel holds nothing of it, else when it lets go (forget, release).
    private func dropLink(_ ino: InodeNumber, _ inode: inout Inode, now: Timespec) throws {
        inode.nlink = inode.isDirectory ? 0 : inode.nlink - 1
        inode.ctime = now
        try storage.save(ino, inode)
        // After a restart the kernel may hold inodes our table never saw.
        if inode.nlink == 0 && !superBlock.kernelMayHoldInodes { try reclaimIfOrphan(ino) }
    }

    func rename(_ ctx: RequestContext, parent: InodeNumber, name: FileName, newParent: InodeNumber,
                newName: FileName, flags: RenameFlags) throws {
        guard !flags.contains(.exchange) else { throw Errno.EINVAL }
        guard newName.bytes.count <= Layout.nameMax else { throw Errno.ENAMETOOLONG }
        try locked {
            var from = try directory(parent)
            guard let (fromSlot, record) = try storage.find(&from, name) else { throw Errno.ENOENT }
            let ino = InodeNumber(record.ino)
            var inode = try storage.usedInode(ino)
            var to = parent == newParent ? from : try directory(newParent)
            let existing = try storage.find(&to, newName)
            if let existing, InodeNumber(existing.record.ino) == ino { return }   // same file: nothing to do
            if existing != nil && flags.contains(.noReplace) { throw Errno.EEXIST }
            if inode.isDirectory {
                // Not into itself or below it.
                var at = newParent
                while at != Layout.rootInode {
                    if at == ino { throw Errno.EINVAL }
                    at = InodeNumber(try storage.usedInode(at).parent)
                }
            }
            let now = currentTime()
            if let (slot, old) = existing {
                var victim = try storage.usedInode(InodeNumber(old.ino))
                if inode.isDirectory {
                    guard victim.isDirectory else { throw Errno.ENOTDIR }
                    guard try storage.isEmptyDirectory(&victim) else { throw Errno.ENOTEMPTY }
                    to.nlink -= 1
                } else if victim.isDirectory {
                    throw Errno.EISDIR
                }
                try storage.replaceRecord(&to, slot: slot, with: DirectoryRecord(ino: UInt32(ino), type: inode.type,
                                                                                 name: newName.bytes))
                try dropLink(InodeNumber(old.ino), &victim, now: now)
            } else {
                try storage.addRecord(&to, DirectoryRecord(ino: UInt32(ino), type: inode.type, name: newName.bytes))
            }
            if parent == newParent { from = to }
            try storage.removeRecord(&from, slot: fromSlot)
            if inode.isDirectory && parent != newParent {
                from.nlink -= 1
                to.nlink += 1
                inode.parent = UInt32(newParent)
            }
            from.mtime = now; from.ctime = now; to.mtime = now; to.ctime = now
            try storage.save(parent, from)
            if parent != newParent { try storage.save(newParent, to) }
            inode.ctime = now
            try storage.save(ino, inode)
        }
    }

    // MARK: Files

    func open(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> OpenReply {
        try locked {
            var inode = try storage.usedInode(ino)
            guard !inode.isDirectory else { throw Errno.EISDIR }
            if flags & OpenFlags.truncate != 0 && flags & OpenFlags.accessMask != OpenFlags.readOnly && inode.isRegular {
                try storage.truncate(&inode, to: 0)
                inode.mtime = currentTime(); inode.ctime = inode.mtime
                try storage.save(ino, inode)
            }
            return OpenReply(handle: superBlock.references.open(.init(ino: ino, flags: flags, isDirectory: false, opener: ctx)))
        }
    }

    func create(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
                flags: Int32) throws -> (Entry, OpenReply) {
        try locked {
            let (ino, inode) = try make(ctx, parent: parent, name: name,
                                        mode: FileMode.regular | (mode & FileMode.permissionMask))
            let handle = superBlock.references.open(.init(ino: ino, flags: flags, isDirectory: false, opener: ctx))
            return (entry(ino, inode), OpenReply(handle: handle))
        }
    }

    func read(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
              into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try locked {
            var inode = try storage.usedInode(ino)
            return try storage.readData(&inode, at: offset, into: buffer)
        }
    }

    func write(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
               data: UnsafeRawBufferPointer) throws -> Int {
        try locked {
            var inode = try storage.usedInode(ino)
            guard inode.isRegular else { throw Errno.EINVAL }
            // Saved even on failure: blocks mapped before it stay the file's.
            defer { try? storage.save(ino, inode) }
            let written = try storage.writeData(&inode, at: offset, from: data)
            inode.mtime = currentTime(); inode.ctime = inode.mtime
            return written
        }
    }

    func release(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle) throws {
        guard let (file, held) = superBlock.references.close(handle) else { throw Errno.EBADF }
        if !held.isHeld { try locked { try reclaimIfOrphan(file.ino) } }
    }

    func fsync(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, dataOnly: Bool) throws {
        // Every change is on the device already: flush its cache.
        try locked { try storage.cache.device.flush() }
    }

    // MARK: Directories

    func opendir(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> FileHandle {
        try locked {
            _ = try directory(ino)
            return superBlock.references.open(.init(ino: ino, flags: flags, isDirectory: true, opener: ctx))
        }
    }

    /// Cookies: 1 after ".", 2 after "..", slot + 3 after the record in
    /// `slot` (records never move, so a cookie stays valid).
    func readdir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64, plus: Bool,
                 _ emit: (DirectoryEntry) -> Bool) throws {
        try locked {
            var dir = try directory(ino)
            if offset < 1 {
                let e = plus ? Entry(attributes: attributes(ino, dir), generation: UInt64(dir.generation)) : nil
                guard emit(DirectoryEntry(ino: ino, nextOffset: 1, type: FileMode.directory, name: ".", entry: e)) else { return }
            }
            if offset < 2 {
                let up = InodeNumber(dir.parent)
                var e: Entry?
                if plus { e = Entry(attributes: attributes(up, try storage.usedInode(up)), generation: 0) }
                guard emit(DirectoryEntry(ino: up, nextOffset: 2, type: FileMode.directory, name: "..", entry: e)) else { return }
            }
            let first = offset > 2 ? Int(offset - 2) : 0
            try storage.forEachRecord(&dir) { slot, record in
                guard slot >= first else { return true }
                let child = InodeNumber(record.ino)
                var e: Entry?
                if plus {
                    let inode = try storage.usedInode(child)
                    e = Entry(attributes: attributes(child, inode), generation: UInt64(inode.generation))
                }
                let next = DirectoryEntry(ino: child, nextOffset: UInt64(slot + 3), type: record.type,
                                          name: FileName(record.name), entry: e)
                guard emit(next) else { return false }
                if plus { superBlock.references.lookedUp(child) }   // only an accepted entry counts
                return true
            }
        }
    }

    func releasedir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle) throws {
        guard let (file, held) = superBlock.references.close(handle) else { throw Errno.EBADF }
        if !held.isHeld { try locked { try reclaimIfOrphan(file.ino) } }
    }

    func fsyncdir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, dataOnly: Bool) throws {
        try locked { try storage.cache.device.flush() }
    }

    // MARK: Upgrade

    func exportState(format: StateFormat) throws -> ExportedState {
        guard format == HandoverState.format else { throw Errno.EINVAL }
        return ExportedState(format: format, bytes: HandoverState(of: storage).encoded())
    }
}
