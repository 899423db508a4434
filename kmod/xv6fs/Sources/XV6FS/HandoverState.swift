import BentoKit
import XV6Layout

/// What one xv6fs instance hands the next in an upgrade. The buffer cache
/// stays in the host, so the log's open transaction travels as block
/// numbers only: its blocks are still pinned and dirty in the cache. Inode
/// contents are read back lazily from the (warm) cache, and directory
/// indexes are rebuilt on first use. Lookup counts and open handles stay in
/// the host's table (`SuperBlock.references`), which both instances share.
///
/// Formats ("xv6fs", version): 3 is the file system's own state, a few
/// hundred bytes whatever the kernel holds; 4 adds the provenance
/// recorder's. 1 and 2 are the same with the host's table copied in, for
/// versions that kept lookup counts and handles in their own memory: they
/// still work, and their size and time grow with the table.
struct HandoverState {
    var uuid: (UInt64, UInt64)
    var log: WriteAheadLog.State
    var blockHint: UInt32
    var freeBlocks: UInt64
    var inodeHint: UInt32
    var freeInodes: UInt64
    var failed: Bool
    /// Formats 3 and 4 only: the exporter recorded every operation of the
    /// open transaction in the host's operation journal, so the journal
    /// needs no refill in the pause (formats 1 and 2 always refill it).
    var journaled = false
    /// Formats 1 and 2 only: the host's table, copied.
    var references: KernelReferences.Snapshot?
    /// Formats 2 and 4 only: where /.provenance is.
    var provenanceIno: UInt32?
    /// Formats 2 and 4 only: operations not recorded yet (a full disk). An
    /// exporter before 2026-12 sends none.
    var provenanceGap: Provenance.Gap?

    static func carriesReferences(_ format: StateFormat) -> Bool { format.version <= 2 }
    static func carriesProvenance(_ format: StateFormat) -> Bool { format.version % 2 == 0 }

    init(_ fs: Xv6FileSystem, format: StateFormat) {
        let v = fs.volume
        uuid = v.sb.uuid
        log = v.log.state
        blockHint = v.blocks.hint
        freeBlocks = v.blocks.freeCount
        inodeHint = v.inodes.hint
        freeInodes = v.inodes.freeCount
        failed = fs.failed
        journaled = fs.superBlock.journal != nil
        references = Self.carriesReferences(format) ? fs.references.snapshot() : nil
        provenanceIno = fs.provenance?.fileIno
        provenanceGap = fs.provenance.map(\.gap) ?? fs.carriedProvenanceGap
    }

    func encoded(format: StateFormat) -> [UInt8] {
        var w = StateWriter(capacity: 128 + 8 * log.blocks.count + 40 * ((references?.files.count ?? 0) + (references?.counts.count ?? 0)))
        w.write(uuid.0); w.write(uuid.1)
        w.write(log.sequence); w.write(log.installUnflushed)
        w.write(UInt64(log.blocks.count))
        for b in log.blocks { w.write(b) }
        w.write(blockHint); w.write(freeBlocks); w.write(inodeHint); w.write(freeInodes)
        w.write(failed)
        // `references` is there exactly for the formats that carry it.
        if let table = references {
            w.write(table.nextHandle)
            w.write(UInt64(table.files.count))
            for (fh, f) in table.files {
                w.write(fh); w.write(UInt32(truncatingIfNeeded: f.ino)); w.write(f.flags); w.write(f.isDirectory)
                w.write(f.opener.uid); w.write(f.opener.gid); w.write(f.opener.pid)
            }
            w.write(UInt64(table.counts.count))
            for (ino, c) in table.counts {
                w.write(UInt32(truncatingIfNeeded: ino)); w.write(c.lookups); w.write(Int64(truncatingIfNeeded: c.opens))
            }
        } else {
            w.write(journaled)
        }
        if Self.carriesProvenance(format) {
            w.write(provenanceIno ?? 0)
            if let gap = provenanceGap {
                w.write(gap.operations)
                w.write(gap.first.seconds); w.write(gap.first.nanoseconds)
                w.write(gap.last.seconds); w.write(gap.last.nanoseconds)
                w.write(gap.error.rawValue)
            }
        }
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
        if !Self.carriesReferences(format) {
            journaled = try r.read()
        } else {
            var table = KernelReferences.Snapshot(nextHandle: try r.read())
            for _ in 0..<(try r.readCount(minimumSize: 29)) {
                let fh: FileHandle = try r.read()
                let ino: UInt32 = try r.read()
                table.files[fh] = KernelReferences.OpenFile(
                    ino: InodeNumber(ino), flags: try r.read(), isDirectory: try r.read(),
                    opener: RequestContext(uid: try r.read(), gid: try r.read(), pid: try r.read()))
            }
            for _ in 0..<(try r.readCount(minimumSize: 20)) {
                let ino: UInt32 = try r.read()
                let lookups: UInt64 = try r.read()
                let opens: Int64 = try r.read()
                guard opens >= 0 else { throw Errno.EINVAL }
                table.counts[InodeNumber(ino)] = KernelReferences.Counts(lookups: lookups, opens: UInt64(opens))
            }
            references = table
        }
        if Self.carriesProvenance(format) {
            let ino: UInt32 = try r.read()
            provenanceIno = ino == 0 ? nil : ino
            if !r.isAtEnd {
                provenanceGap = Provenance.Gap(
                    operations: try r.read(),
                    first: Timespec(seconds: try r.read(), nanoseconds: try r.read()),
                    last: Timespec(seconds: try r.read(), nanoseconds: try r.read()),
                    error: Errno(try r.read()))
                guard provenanceGap!.operations > 0 else { throw Errno.EINVAL }
            }
        }
        guard r.isAtEnd else { throw Errno.EINVAL }
    }

    /// Checks the state against the file system it claims to describe.
    func validate(against sb: Superblock) throws {
        guard uuid == sb.uuid else { throw Errno.EINVAL }
        guard log.blocks.count <= Int(sb.logBlocks),
              log.blocks.allSatisfy(sb.mayBeLogged),
              freeBlocks <= sb.totalBlocks, freeInodes < UInt64(sb.inodeCount),
              references.map({ Self.inodesValid($0, sb) }) ?? true,
              provenanceIno.map({ $0 >= Layout.rootInode && $0 < sb.inodeCount }) ?? true
        else { throw Errno.EINVAL }
    }

    private static func inodesValid(_ table: KernelReferences.Snapshot, _ sb: Superblock) -> Bool {
        func valid(_ ino: InodeNumber) -> Bool { ino >= InodeNumber(Layout.rootInode) && ino < InodeNumber(sb.inodeCount) }
        return table.files.values.allSatisfy { valid($0.ino) } && table.counts.keys.allSatisfy(valid)
    }

    /// An instance that carries on where the exporting one stopped.
    func restore(_ superBlock: SuperBlock, knownFeatures: FeatureSet = .none,
                 reader: String = "xv6fs") throws -> Xv6FileSystem {
        let sb = try Volume.readSuperblock(superBlock.cache)
        let readOnly = try Xv6FileSystem.accessIsReadOnly(sb, superBlock, knownFeatures: knownFeatures, reader: reader)
        try validate(against: sb)
        let volume = Volume(cache: superBlock.cache, superblock: sb, journal: superBlock.journal)
        volume.log.adopt(log)
        volume.blocks.hint = blockHint
        volume.blocks.freeCount = freeBlocks
        volume.inodes.hint = inodeHint
        volume.inodes.freeCount = freeInodes
        let fs = Xv6FileSystem(superBlock: superBlock, volume: volume, readOnly: readOnly)
        fs.failed = failed
        // A copied table (formats 1 and 2) replaces the host's: the
        // exporter kept its own, and the host's may be stale.
        if let references { superBlock.references.replace(with: references) }
        // Last: the exporter may have kept no journal. Should this need a
        // commit and the commit fail, the new instance carries on failed
        // (as after any device error) rather than hand a changed log back.
        if !failed && !journaled {
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
