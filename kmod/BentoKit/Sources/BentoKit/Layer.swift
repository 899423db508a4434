/// Stacked modules: a layer serves its file system over another module
/// instance, the lower one, which the host lends it the way it lends the
/// block device to the module at the bottom of the stack. The host builds
/// the stack from the config (`module = ["provenance-1.0.0.so",
/// "xv6fs-1.0.0.so"]`, top first), sends the kernel's requests to the top,
/// and upgrades each layer on its own (Docs/module-sdk.md, "Layers").

/// What a layer's module file hands the host, in place of a `BentoModule`.
public protocol BentoLayerModule: AnyObject {
    /// `fileSystem` names the layer ("provenance"): an upgrade swaps the
    /// layer of that name and leaves the others alone.
    var descriptor: ModuleDescriptor { get }
    /// A fresh mount, over a lower instance that is mounted already.
    func mount(_ superBlock: SuperBlock, over lower: LowerFileSystem) throws -> any FileSystem
    /// An instance that carries on from the state another instance of
    /// this layer exported, over the same lower file system. Throwing
    /// leaves the old instance in charge.
    func restore(_ superBlock: SuperBlock, over lower: LowerFileSystem, from state: ExportedState) throws -> any FileSystem
}

/// The lower file system, lent to a layer for the life of the mount.
///
/// An upgrade of a layer below puts a new instance behind it, with no
/// call in flight: call through `fileSystem` each time and never keep the
/// instance. What the layer does through it counts as the kernel's doing:
/// a lookup must be forgotten, an open released, within the same call.
public final class LowerFileSystem: @unchecked Sendable {
    /// The instance serving below now.
    public private(set) var fileSystem: any FileSystem
    /// The module below: its name and version.
    public private(set) var descriptor: ModuleDescriptor

    @_spi(Host)
    public init(_ fileSystem: any FileSystem, descriptor: ModuleDescriptor) {
        self.fileSystem = fileSystem
        self.descriptor = descriptor
    }

    /// The host swapped the layer below (gate closed: no call in flight).
    @_spi(Host)
    public func replace(with fileSystem: any FileSystem, descriptor: ModuleDescriptor) {
        self.fileSystem = fileSystem
        self.descriptor = descriptor
    }
}

/// A layer that passes every call on to the lower file system unchanged:
/// subclass it and override what the layer adds. Lifetime calls
/// (initialize, sync, destroy) go down too; `exportState` is the one that
/// does not: each layer exports its own state, and the host asks each.
open class PassThroughLayer: FileSystem {
    public let lower: LowerFileSystem
    public let superBlock: SuperBlock
    /// The instance below now (see LowerFileSystem).
    public var below: any FileSystem { lower.fileSystem }

    public init(_ superBlock: SuperBlock, over lower: LowerFileSystem) {
        self.superBlock = superBlock
        self.lower = lower
    }

    open func initialize() throws { try below.initialize() }
    open func destroy() throws { try below.destroy() }
    open func sync() throws { try below.sync() }

    open func lookup(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws -> Entry {
        try below.lookup(ctx, parent: parent, name: name)
    }
    open func forget(ino: InodeNumber, count: UInt64) { below.forget(ino: ino, count: count) }
    open func getattr(_ ctx: RequestContext, ino: InodeNumber) throws -> FileAttributes {
        try below.getattr(ctx, ino: ino)
    }
    open func setattr(_ ctx: RequestContext, ino: InodeNumber, _ changes: SetAttributes,
                      handle: FileHandle?) throws -> FileAttributes {
        try below.setattr(ctx, ino: ino, changes, handle: handle)
    }
    open func readlink(_ ctx: RequestContext, ino: InodeNumber) throws -> [UInt8] {
        try below.readlink(ctx, ino: ino)
    }
    open func mknod(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
                    rdev: UInt32) throws -> Entry {
        try below.mknod(ctx, parent: parent, name: name, mode: mode, rdev: rdev)
    }
    open func mkdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32) throws -> Entry {
        try below.mkdir(ctx, parent: parent, name: name, mode: mode)
    }
    open func unlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws {
        try below.unlink(ctx, parent: parent, name: name)
    }
    open func rmdir(_ ctx: RequestContext, parent: InodeNumber, name: FileName) throws {
        try below.rmdir(ctx, parent: parent, name: name)
    }
    open func symlink(_ ctx: RequestContext, parent: InodeNumber, name: FileName, target: [UInt8]) throws -> Entry {
        try below.symlink(ctx, parent: parent, name: name, target: target)
    }
    open func rename(_ ctx: RequestContext, parent: InodeNumber, name: FileName, newParent: InodeNumber,
                     newName: FileName, flags: RenameFlags) throws {
        try below.rename(ctx, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
    }
    open func link(_ ctx: RequestContext, ino: InodeNumber, newParent: InodeNumber, newName: FileName) throws -> Entry {
        try below.link(ctx, ino: ino, newParent: newParent, newName: newName)
    }
    open func open(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> OpenReply {
        try below.open(ctx, ino: ino, flags: flags)
    }
    open func read(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
                   into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try below.read(ctx, ino: ino, handle: handle, offset: offset, into: buffer)
    }
    open func write(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
                    data: UnsafeRawBufferPointer) throws -> Int {
        try below.write(ctx, ino: ino, handle: handle, offset: offset, data: data)
    }
    open func release(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle) throws {
        try below.release(ctx, ino: ino, handle: handle)
    }
    open func fsync(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, dataOnly: Bool) throws {
        try below.fsync(ctx, ino: ino, handle: handle, dataOnly: dataOnly)
    }
    open func opendir(_ ctx: RequestContext, ino: InodeNumber, flags: Int32) throws -> FileHandle {
        try below.opendir(ctx, ino: ino, flags: flags)
    }
    open func readdir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64, plus: Bool,
                      _ emit: (DirectoryEntry) -> Bool) throws {
        try below.readdir(ctx, ino: ino, handle: handle, offset: offset, plus: plus, emit)
    }
    open func releasedir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle) throws {
        try below.releasedir(ctx, ino: ino, handle: handle)
    }
    open func fsyncdir(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, dataOnly: Bool) throws {
        try below.fsyncdir(ctx, ino: ino, handle: handle, dataOnly: dataOnly)
    }
    open func statfs(_ ctx: RequestContext, ino: InodeNumber) throws -> FileSystemStats {
        try below.statfs(ctx, ino: ino)
    }
    open func create(_ ctx: RequestContext, parent: InodeNumber, name: FileName, mode: UInt32,
                     flags: Int32) throws -> (Entry, OpenReply) {
        try below.create(ctx, parent: parent, name: name, mode: mode, flags: flags)
    }
    open func access(_ ctx: RequestContext, ino: InodeNumber, mask: Int32) throws {
        try below.access(ctx, ino: ino, mask: mask)
    }
    open func getxattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName) throws -> [UInt8] {
        try below.getxattr(ctx, ino: ino, name: name)
    }
    open func listxattr(_ ctx: RequestContext, ino: InodeNumber) throws -> [FileName] {
        try below.listxattr(ctx, ino: ino)
    }
    open func setxattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName, value: UnsafeRawBufferPointer,
                       flags: Int32) throws {
        try below.setxattr(ctx, ino: ino, name: name, value: value, flags: flags)
    }
    open func removexattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName) throws {
        try below.removexattr(ctx, ino: ino, name: name)
    }
    open func fallocate(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, mode: Int32, offset: UInt64,
                        length: UInt64) throws {
        try below.fallocate(ctx, ino: ino, handle: handle, mode: mode, offset: offset, length: length)
    }
    open func seek(_ ctx: RequestContext, ino: InodeNumber, handle: FileHandle, offset: UInt64,
                   whence: Int32) throws -> UInt64 {
        try below.seek(ctx, ino: ino, handle: handle, offset: offset, whence: whence)
    }

    /// A layer with state overrides this; the default exports nothing.
    open func exportState(format: StateFormat) throws -> ExportedState {
        ExportedState(format: format, bytes: [])
    }
}
