import BentoKit

/// Provenance over any file system: every create (files, directories,
/// nodes, symlinks), open for writing, write, preallocation, rename, link,
/// unlink, rmdir and setattr that succeeds below is recorded in
/// /.provenance, as xv6fs 2.x records them (Docs/upgrade.md, "Provenance").
///
/// The last blocks are kept for the records, as in xv6fs 2.x: statfs
/// reports them free but not available, and the calls that allocate are
/// refused with ENOSPC before they would eat into them, so that data runs
/// out first. The lower file system knows nothing of this reserve: the
/// layer can only tell an allocation by the kind of call, so a write that
/// would overwrite in place is refused too once the reserve is all that
/// is left.
final class ProvenanceFileSystem: PassThroughLayer, @unchecked Sendable {
    let recorder: Recorder

    init(_ superBlock: SuperBlock, over lower: LowerFileSystem, fileIno: InodeNumber?, gap: Gap?) {
        recorder = Recorder(superBlock, over: lower, fileIno: fileIno, gap: gap)
        super.init(superBlock, over: lower)
    }

    /// 1% of the blocks, at least 64 and at most 4096: xv6fs 2.x's reserve.
    static func reserve(of stats: FileSystemStats) -> UInt64 { min(max(stats.blocks / 100, 64), 4096) }

    /// Refuses a call that allocates (`bytes` of data, or one block) when
    /// that would come out of the reserve.
    private func checkRoom(_ ctx: RequestContext, bytes: Int = 1) throws {
        let stats = try below.statfs(ctx, ino: Recorder.root)
        let size = UInt64(max(stats.blockSize, 1)), blocks = (UInt64(bytes) + size - 1) / size
        guard stats.availableBlocks >= Self.reserve(of: stats) + blocks else { throw Errno.ENOSPC }
    }

    /// The inode `name` in `parent` names now, for a record of its removal.
    private func inode(_ ctx: RequestContext, parent: InodeNumber, name: FileName) -> InodeNumber? {
        guard let entry = try? below.lookup(ctx, parent: parent, name: name) else { return nil }
        below.forget(ino: entry.ino, count: 1)
        return entry.ino
    }

    /// Writes arrive from the kernel (pid 0) with its writeback cache: the
    /// record names who opened the file.
    private func writer(_ ctx: RequestContext, _ handle: FileHandle) -> RequestContext {
        ctx.pid == 0 ? superBlock.references.file(handle)?.opener ?? ctx : ctx
    }

    override func statfs(_ ctx: RequestContext, ino: InodeNumber) throws -> FileSystemStats {
        var stats = try below.statfs(ctx, ino: ino)
        let reserve = Self.reserve(of: stats)
        stats.availableBlocks = stats.availableBlocks > reserve ? stats.availableBlocks - reserve : 0
        return stats
    }

    override func create(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
                         flags: Int32) throws -> (Entry, OpenReply) {
        try checkRoom(ctx)
        let made = try below.create(ctx, parent: parent, name: name, mode: mode, flags: flags)
        recorder.record(ctx, .create(parent: parent, name: name.bytes, ino: made.0.ino))
        return made
    }

    override func mknod(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
                        rdev: UInt32) throws -> Entry {
        try checkRoom(ctx)
        let entry = try below.mknod(ctx, parent: parent, name: name, mode: mode, rdev: rdev)
        recorder.record(ctx, .create(parent: parent, name: name.bytes, ino: entry.ino))
        return entry
    }

    override func mkdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32) throws -> Entry {
        try checkRoom(ctx)
        let entry = try below.mkdir(ctx, parent: parent, name: name, mode: mode)
        recorder.record(ctx, .create(parent: parent, name: name.bytes, ino: entry.ino))
        return entry
    }

    override func symlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName, target: [UInt8]) throws -> Entry {
        try checkRoom(ctx)
        let entry = try below.symlink(ctx, parent: parent, name: name, target: target)
        recorder.record(ctx, .create(parent: parent, name: name.bytes, ino: entry.ino))
        return entry
    }

    override func link(_ ctx: RequestContext, ino: InodeNumber, newParent: InodeNumber, newName: FileName) throws -> Entry {
        try checkRoom(ctx)
        let entry = try below.link(ctx, ino: ino, newParent: newParent, newName: newName)
        recorder.record(ctx, .link(ino: ino, newParent: newParent, newName: newName.bytes))
        return entry
    }

    override func unlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws {
        let ino = inode(ctx, parent: parent, name: name)
        try below.unlink(ctx, parent: parent, name: name)
        if let ino { recorder.record(ctx, .unlink(parent: parent, name: name.bytes, ino: ino)) }
    }

    override func rmdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws {
        let ino = inode(ctx, parent: parent, name: name)
        try below.rmdir(ctx, parent: parent, name: name)
        if let ino { recorder.record(ctx, .unlink(parent: parent, name: name.bytes, ino: ino)) }
    }

    override func rename(_ ctx: RequestContext, parent: InodeNumber, name: FileName, newParent: InodeNumber,
                         newName: FileName, flags: RenameFlags) throws {
        let ino = inode(ctx, parent: parent, name: name)
        try below.rename(ctx, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
        if let ino {
            recorder.record(ctx, .rename(parent: parent, name: name.bytes, newParent: newParent, newName: newName.bytes, ino: ino))
        }
    }

    override func setattr(_ ctx: RequestContext, ino: InodeNumber, _ changes: SetAttributes,
                          handle: FileHandle?) throws -> FileAttributes {
        let attributes = try below.setattr(ctx, ino: ino, changes, handle: handle)
        recorder.record(ctx, .setattr(ino: ino))
        return attributes
    }

    override func open(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> OpenReply {
        let reply = try below.open(ctx, ino: ino, flags: flags)
        if flags & OpenFlags.accessMask != OpenFlags.readOnly { recorder.record(ctx, .openForWriting(ino: ino)) }
        return reply
    }

    override func write(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
                        data: UnsafeRawBufferPointer) throws -> Int {
        if ino != recorder.fileIno { try checkRoom(ctx, bytes: data.count) }
        let done = try below.write(ctx, ino: ino, handle: handle, offset: offset, data: data)
        if done > 0 { recorder.record(writer(ctx, handle), .write(ino: ino, offset: offset, count: done)) }
        return done
    }

    override func fallocate(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, mode: Int32, offset: UInt64,
                            length: UInt64) throws {
        let punchHole: Int32 = 0x02
        if mode & punchHole == 0 { try checkRoom(ctx) }
        try below.fallocate(ctx, ino: ino, handle: handle, mode: mode, offset: offset, length: length)
        recorder.record(ctx, .write(ino: ino, offset: offset, count: Int(clamping: length)))
    }

    override func exportState(format: StateFormat) throws -> ExportedState {
        guard format == ProvenanceLayerModule.stateFormat else { throw Errno.EINVAL }
        return ExportedState(format: format, bytes: LayerState(fileIno: recorder.fileIno, gap: recorder.gap).encoded())
    }
}
