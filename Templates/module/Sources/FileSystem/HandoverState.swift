import BentoKit

/// What one version hands the next in a live upgrade (and takes back in a
/// rollback). Open handles and lookup counts need no place here: the host
/// keeps them (`superBlock.references`), and every change is on the device
/// already (write-through). What is left is what saves the new version a
/// scan of the disk: the free counts and where the allocators look next.
///
/// A new version that keeps more state adds a format (version 2), lists it
/// first in both lists of its descriptor, and keeps this one after it, so
/// that it can be upgraded to and rolled back from (Docs/upgrade.md).
struct HandoverState: Equatable {
    static let format = StateFormat(name: fileSystemName, version: 1)

    /// The volume the state is for: never import another's.
    var volumeID: UInt64
    var freeBlocks: UInt64
    var freeInodes: UInt64
    var blockHint: UInt64
    var inodeHint: UInt64

    init(of storage: Storage) {
        volumeID = storage.geometry.volumeID
        freeBlocks = storage.freeBlocks
        freeInodes = storage.freeInodes
        blockHint = storage.blockHint
        inodeHint = storage.inodeHint
    }

    func encoded() -> [UInt8] {
        var writer = StateWriter(capacity: 40)
        writer.write(volumeID)
        writer.write(freeBlocks)
        writer.write(freeInodes)
        writer.write(blockHint)
        writer.write(inodeHint)
        return writer.bytes
    }

    /// Checks everything against the volume before anything is used: a
    /// throw here leaves the old version serving.
    init(decoding bytes: [UInt8], for geometry: Geometry) throws {
        var reader = StateReader(bytes)
        volumeID = try reader.read()
        freeBlocks = try reader.read()
        freeInodes = try reader.read()
        blockHint = try reader.read()
        inodeHint = try reader.read()
        guard reader.isAtEnd, volumeID == geometry.volumeID,
              freeBlocks <= geometry.blockCount - geometry.dataStart, freeInodes < geometry.inodeCount,
              (geometry.dataStart..<geometry.blockCount).contains(blockHint),
              (2..<geometry.inodeCount).contains(inodeHint)
        else { throw Errno.EINVAL }
    }
}
