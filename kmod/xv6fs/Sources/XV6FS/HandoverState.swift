import BentoKit
import XV6Layout

/// What one xv6fs instance hands the next in an upgrade: state format
/// "xv6fs" version 1, and version 2 which appends the provenance recorder's
/// state (version 1 drops it: the records themselves are on disk already). The buffer cache stays in the host, so the log's open
/// transaction travels as block numbers only: its blocks are still pinned
/// and dirty in the cache. Inodes travel as reference counts only; their
/// contents are read back lazily from the (warm) cache. Directory indexes
/// are rebuilt on first use.
struct HandoverState {
    var uuid: (UInt64, UInt64)
    var log: WriteAheadLog.State
    var blockHint: UInt32
    var freeBlocks: UInt64
    var inodeHint: UInt32
    var freeInodes: UInt64
    var failed: Bool
    var nextHandle: FileHandle
    var handles: [(FileHandle, Xv6FileSystem.OpenHandle)]
    var references: [(ino: UInt32, lookups: UInt64, opens: Int)]
    /// Format 2 only: where /.provenance is.
    var provenanceIno: UInt32?

    init(_ fs: Xv6FileSystem) {
        let v = fs.volume
        uuid = v.sb.uuid
        log = v.log.state
        blockHint = v.blocks.hint
        freeBlocks = v.blocks.freeCount
        inodeHint = v.inodes.hint
        freeInodes = v.inodes.freeCount
        failed = fs.failed
        nextHandle = fs.nextHandle
        handles = fs.handles.map { ($0.key, $0.value) }
        references = v.inodes.references
        provenanceIno = fs.provenance?.fileIno
    }

    func encoded(format: StateFormat) -> [UInt8] {
        var w = StateWriter(capacity: 128 + 16 * (log.blocks.count + handles.count + references.count))
        w.write(uuid.0); w.write(uuid.1)
        w.write(log.sequence); w.write(log.installUnflushed)
        w.write(UInt64(log.blocks.count))
        for b in log.blocks { w.write(b) }
        w.write(blockHint); w.write(freeBlocks); w.write(inodeHint); w.write(freeInodes)
        w.write(failed)
        w.write(nextHandle)
        w.write(UInt64(handles.count))
        for (fh, h) in handles {
            w.write(fh); w.write(h.ino); w.write(h.flags); w.write(h.isDirectory)
            w.write(h.opener.uid); w.write(h.opener.gid); w.write(h.opener.pid)
        }
        w.write(UInt64(references.count))
        for r in references { w.write(r.ino); w.write(r.lookups); w.write(Int64(r.opens)) }
        if format == Xv6Module.provenanceStateFormat { w.write(provenanceIno ?? 0) }
        return w.bytes
    }

    init(decoding bytes: [UInt8], format: StateFormat) throws {
        var r = StateReader(bytes)
        uuid = (try r.read(), try r.read())
        let sequence: UInt64 = try r.read()
        let unflushed: Bool = try r.read()
        var blocks: [UInt64] = []
        for _ in 0..<(try r.readCount(minimumSize: 8)) { blocks.append(try r.read()) }
        log = .init(sequence: sequence, blocks: blocks, installUnflushed: unflushed)
        blockHint = try r.read(); freeBlocks = try r.read(); inodeHint = try r.read(); freeInodes = try r.read()
        failed = try r.read()
        nextHandle = try r.read()
        handles = []
        for _ in 0..<(try r.readCount(minimumSize: 29)) {
            let fh: FileHandle = try r.read()
            let handle = Xv6FileSystem.OpenHandle(ino: try r.read(), flags: try r.read(), isDirectory: try r.read(),
                                                  opener: RequestContext(uid: try r.read(), gid: try r.read(), pid: try r.read()))
            handles.append((fh, handle))
        }
        references = []
        for _ in 0..<(try r.readCount(minimumSize: 20)) {
            let ino: UInt32 = try r.read()
            let lookups: UInt64 = try r.read()
            let opens: Int64 = try r.read()
            guard opens >= 0 else { throw Errno.EINVAL }
            references.append((ino, lookups, Int(opens)))
        }
        if format == Xv6Module.provenanceStateFormat {
            let ino: UInt32 = try r.read()
            provenanceIno = ino == 0 ? nil : ino
        }
        guard r.isAtEnd else { throw Errno.EINVAL }
    }

    /// Checks the state against the file system it claims to describe.
    func validate(against sb: Superblock) throws {
        guard uuid == sb.uuid else { throw Errno.EINVAL }
        guard log.blocks.count <= Int(sb.logBlocks),
              log.blocks.allSatisfy({ $0 >= UInt64(sb.inodeStart) && $0 < sb.totalBlocks }),
              freeBlocks <= sb.totalBlocks, freeInodes < UInt64(sb.inodeCount),
              handles.allSatisfy({ $0.1.ino >= Layout.rootInode && $0.1.ino < sb.inodeCount }),
              references.allSatisfy({ $0.ino >= Layout.rootInode && $0.ino < sb.inodeCount }),
              provenanceIno.map({ $0 >= Layout.rootInode && $0 < sb.inodeCount }) ?? true
        else { throw Errno.EINVAL }
    }

    /// An instance that carries on where the exporting one stopped.
    func restore(_ superBlock: SuperBlock) throws -> Xv6FileSystem {
        let sb = try Volume.readSuperblock(superBlock.cache)
        try validate(against: sb)
        let volume = Volume(cache: superBlock.cache, superblock: sb, journal: superBlock.journal)
        volume.log.adopt(log)
        volume.blocks.hint = blockHint
        volume.blocks.freeCount = freeBlocks
        volume.inodes.hint = inodeHint
        volume.inodes.freeCount = freeInodes
        var pending: [UInt32: (lookups: UInt64, opens: Int)] = [:]
        pending.reserveCapacity(references.count)
        for r in references { pending[r.ino] = (r.lookups, r.opens) }
        volume.inodes.pendingReferences = pending
        let fs = Xv6FileSystem(superBlock: superBlock, volume: volume)
        fs.failed = failed
        fs.nextHandle = nextHandle
        fs.handles = Dictionary(handles, uniquingKeysWith: { a, _ in a })
        // Last: the exporter may have kept no journal. Should this need a
        // commit and the commit fail, the new instance carries on failed
        // (as after any device error) rather than hand a changed log back.
        if !failed {
            do {
                try volume.log.resynchronizeJournal()
            } catch {
                fs.failed = true
                superBlock.log("xv6fs: filling the operation journal after an upgrade failed: \(error)")
            }
        }
        return fs
    }
}
