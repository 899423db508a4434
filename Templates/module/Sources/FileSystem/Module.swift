import BentoKit

/// The file system this module serves: an upgrade only swaps modules of the
/// same name. The kernel's mount type is this name less a trailing "fs".
let fileSystemName = "@NAME@"

/// The version, taken from the Swift module name Package.swift gives this
/// build ("@MODULE@_0_1_0", or "@MODULE@_0_1_0_dev3" for `make dev`'s
/// third build): Package.swift is the one place that names it.
let moduleVersion: SemanticVersion = {
    let parts = #fileID.prefix { $0 != "/" }.split(separator: "_")
    return parts.count >= 4 ? SemanticVersion("\(parts[1]).\(parts[2]).\(parts[3])") ?? SemanticVersion(0, 0, 0)
                            : SemanticVersion(0, 0, 0)
}()

/// What the host loads: describes the module and makes instances.
final class Module: BentoModule, @unchecked Sendable {
    let descriptor = ModuleDescriptor(fileSystem: fileSystemName, version: moduleVersion,
                                      exportFormats: [HandoverState.format], importFormats: [HandoverState.format])

    /// A fresh mount: formats an all-zero device, else reads the disk.
    func mount(_ superBlock: SuperBlock) throws -> any FileSystem {
        let cache = superBlock.cache
        guard cache.blockSize == Layout.blockSize else { throw Errno.EINVAL }
        let found = try cache.withBlock(0) { try Geometry.decode($0, deviceBlocks: cache.device.blockCount) }
        let geometry: Geometry
        if let found {
            geometry = found
        } else {
            geometry = try Storage.format(cache, blockCount: cache.device.blockCount, now: currentTime())
            superBlock.log("\(fileSystemName): formatted the empty device (\(geometry.blockCount) blocks, "
                           + "\(geometry.inodeCount) inodes)")
        }
        let storage = Storage(cache: cache, geometry: geometry, freeBlocks: 0, freeInodes: 0,
                              blockHint: geometry.dataStart, inodeHint: 2)
        try storage.countFree()
        let volume = Volume(superBlock: superBlock, storage: storage)
        if !superBlock.kernelMayHoldInodes { try volume.reclaimOrphans() }
        return volume
    }

    /// Carries on from the state another version exported.
    func restore(_ superBlock: SuperBlock, from state: ExportedState) throws -> any FileSystem {
        guard state.format == HandoverState.format else { throw Errno.EINVAL }
        let cache = superBlock.cache
        guard let geometry = try cache.withBlock(0, { try Geometry.decode($0, deviceBlocks: cache.device.blockCount) })
        else { throw Errno.EINVAL }
        let handover = try HandoverState(decoding: state.bytes, for: geometry)
        let storage = Storage(cache: cache, geometry: geometry, freeBlocks: handover.freeBlocks,
                              freeInodes: handover.freeInodes, blockHint: handover.blockHint,
                              inodeHint: handover.inodeHint)
        return Volume(superBlock: superBlock, storage: storage)
    }
}

extension Volume {
    /// Frees inodes no name points to: unlinked while open when the last
    /// mount ended.
    func reclaimOrphans() throws {
        for ino in 2..<storage.geometry.inodeCount {
            var inode = try storage.inode(ino)
            if inode.mode != 0 && inode.nlink == 0 { try storage.freeInode(ino, &inode) }
        }
        try storage.writeThrough()
    }
}

/// The module file's one C-ABI symbol: the host resolves it with dlsym.
@_cdecl("bento_module_entry")
public func bentoModuleEntry() -> UnsafeRawPointer { entryRecord }

/// Made once: the host may call the entry more than once.
nonisolated(unsafe) private let entryRecord = BentoModuleEntry.make(Module())
