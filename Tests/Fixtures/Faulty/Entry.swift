import BentoKit
import Glibc
import XV6FS2

// Module files whose new version misbehaves on purpose, for the
// containment tests: xv6fs 2.x (provenance) with one fault injected, each
// this one source built with one define (Tests/Fixtures/<Name> links here).
//   FIXTURE_TRAP   xv6fs 2.0.1: a create of "poison" traps (fatalError)
//   FIXTURE_HANG   xv6fs 2.0.2: a create of "poison" never returns
//   FIXTURE_READS  xv6fs 2.0.3: one read in ten fails with EIO
//   FIXTURE_COPIES xv6fs 2.0.4: no fault, but speaks only the state formats
//                  of earlier builds (1 and 2), which copy the host's table
//                  of lookups and handles through the state: the slow path
//   FIXTURE_VIEW   xv6fs 2.0.5: no fault, but shows the same disk otherwise:
//                  the name "hidden-in-2.0.5" is not there, and every regular
//                  file belongs to uid 2005 (for the tests of what the
//                  kernel caches across versions)
// Upgrade to them from 1.0.0: they carry the XV6FS2 module, as
// xv6fs-2.0.0.so does.
#if FIXTURE_TRAP
private let version = SemanticVersion(2, 0, 1)
#elseif FIXTURE_HANG
private let version = SemanticVersion(2, 0, 2)
#elseif FIXTURE_COPIES
private let version = SemanticVersion(2, 0, 4)
#elseif FIXTURE_VIEW
private let version = SemanticVersion(2, 0, 5)
#else
private let version = SemanticVersion(2, 0, 3)
#endif

final class FaultyModule: BentoModule {
    let inner = Xv6Module(version: version, provenance: true)
    #if FIXTURE_COPIES
    var descriptor: ModuleDescriptor {
        let copied = [Xv6Module.copiedProvenanceStateFormat, Xv6Module.copiedStateFormat]
        return ModuleDescriptor(fileSystem: Xv6Module.fileSystemName, version: version, exportFormats: copied, importFormats: copied)
    }
    #else
    var descriptor: ModuleDescriptor { inner.descriptor }
    #endif
    func mount(_ superBlock: SuperBlock) throws -> any FileSystem { FaultyFileSystem(try inner.mount(superBlock)) }
    func restore(_ superBlock: SuperBlock, from state: ExportedState) throws -> any FileSystem {
        FaultyFileSystem(try inner.restore(superBlock, from: state))
    }
}

/// xv6fs as it is, but for the one fault.
final class FaultyFileSystem: FileSystem {
    let fs: any FileSystem
    private var reads: UInt64 = 0
    init(_ fs: any FileSystem) { self.fs = fs }

    func create(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
                flags: Int32) throws -> (Entry, OpenReply) {
        if name.bytes == Array("poison".utf8) {
            #if FIXTURE_TRAP
            fatalError("xv6fs 2.0.1: a bug in create")
            #elseif FIXTURE_HANG
            while true { sleep(1) }
            #endif
        }
        let (entry, open) = try fs.create(ctx, parent: parent, name: name, mode: mode, flags: flags)
        return (shown(entry), open)
    }

    func read(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
              into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        #if FIXTURE_READS
        // Not a lock: an approximate one in ten is all this needs.
        reads &+= 1
        if reads % 10 == 0 { throw Errno.EIO }
        #endif
        return try fs.read(ctx, ino: ino, handle: handle, offset: offset, into: buffer)
    }

    func initialize() throws { try fs.initialize() }
    func destroy() throws { try fs.destroy() }
    func sync() throws { try fs.sync() }
    #if FIXTURE_VIEW
    private static let hidden = FileName("hidden-in-2.0.5")
    private func shown(_ a: FileAttributes) -> FileAttributes {
        var a = a
        if a.mode & FileMode.typeMask == FileMode.regular { a.uid = 2005 }
        return a
    }
    private func shown(_ e: Entry) -> Entry { Entry(attributes: shown(e.attributes), generation: e.generation) }
    #else
    private func shown<T>(_ value: T) -> T { value }
    #endif

    func lookup(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws -> Entry {
        #if FIXTURE_VIEW
        if name == Self.hidden { throw Errno.ENOENT }
        #endif
        return shown(try fs.lookup(ctx, parent: parent, name: name))
    }
    func forget(ino: InodeNumber, count: UInt64) { fs.forget(ino: ino, count: count) }
    func getattr(_ ctx: RequestContext, ino: InodeNumber) throws -> FileAttributes { shown(try fs.getattr(ctx, ino: ino)) }
    func setattr(_ ctx: RequestContext, ino: InodeNumber, _ changes: SetAttributes, handle: FileHandle?) throws -> FileAttributes {
        shown(try fs.setattr(ctx, ino: ino, changes, handle: handle))
    }
    func readlink(_ ctx: RequestContext, ino: InodeNumber) throws -> [UInt8] { try fs.readlink(ctx, ino: ino) }
    func mknod(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32, rdev: UInt32) throws -> Entry {
        try fs.mknod(ctx, parent: parent, name: name, mode: mode, rdev: rdev)
    }
    func mkdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32) throws -> Entry {
        try fs.mkdir(ctx, parent: parent, name: name, mode: mode)
    }
    func unlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws { try fs.unlink(ctx, parent: parent, name: name) }
    func rmdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws { try fs.rmdir(ctx, parent: parent, name: name) }
    func symlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName, target: [UInt8]) throws -> Entry {
        try fs.symlink(ctx, parent: parent, name: name, target: target)
    }
    func rename(_ ctx: RequestContext, parent: InodeNumber, name: FileName, newParent: InodeNumber, newName: FileName,
                flags: RenameFlags) throws {
        try fs.rename(ctx, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
    }
    func link(_ ctx: RequestContext, ino: InodeNumber, newParent: InodeNumber, newName: FileName) throws -> Entry {
        try fs.link(ctx, ino: ino, newParent: newParent, newName: newName)
    }
    func open(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> OpenReply { try fs.open(ctx, ino: ino, flags: flags) }
    func write(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64, data: UnsafeRawBufferPointer) throws -> Int {
        try fs.write(ctx, ino: ino, handle: handle, offset: offset, data: data)
    }
    func release(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle) throws { try fs.release(ctx, ino: ino, handle: handle) }
    func fsync(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, dataOnly: Bool) throws {
        try fs.fsync(ctx, ino: ino, handle: handle, dataOnly: dataOnly)
    }
    func opendir(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> FileHandle { try fs.opendir(ctx, ino: ino, flags: flags) }
    func readdir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64, plus: Bool,
                 _ emit: (DirectoryEntry) -> Bool) throws {
        #if FIXTURE_VIEW
        var skipped: Entry?
        defer { if let skipped { fs.forget(ino: skipped.ino, count: 1) } }  // counted, never handed out
        try fs.readdir(ctx, ino: ino, handle: handle, offset: offset, plus: plus) { e in
            if e.name == Self.hidden {
                skipped = e.entry
                return true
            }
            var e = e
            e.entry = e.entry.map(shown)
            return emit(e)
        }
        #else
        try fs.readdir(ctx, ino: ino, handle: handle, offset: offset, plus: plus, emit)
        #endif
    }
    func releasedir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle) throws { try fs.releasedir(ctx, ino: ino, handle: handle) }
    func fsyncdir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, dataOnly: Bool) throws {
        try fs.fsyncdir(ctx, ino: ino, handle: handle, dataOnly: dataOnly)
    }
    func statfs(_ ctx: RequestContext, ino: InodeNumber) throws -> FileSystemStats { try fs.statfs(ctx, ino: ino) }
    func access(_ ctx: RequestContext, ino: InodeNumber, mask: Int32) throws { try fs.access(ctx, ino: ino, mask: mask) }
    func getxattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName) throws -> [UInt8] { try fs.getxattr(ctx, ino: ino, name: name) }
    func listxattr(_ ctx: RequestContext, ino: InodeNumber) throws -> [FileName] { try fs.listxattr(ctx, ino: ino) }
    func exportState(format: StateFormat) throws -> ExportedState { try fs.exportState(format: format) }
}

@_cdecl("bento_module_entry")
public func bentoModuleEntry() -> UnsafeRawPointer { entryRecord }

nonisolated(unsafe) private let entryRecord = BentoModuleEntry.make(FaultyModule())
