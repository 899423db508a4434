import BentoKit
import XV6Layout

/// Removing format features from an image nothing uses them on any more
/// (`fsck.xv6 --downgrade`), so that an earlier version serves it again.
public enum Downgrade {
    /// Clears `features` in the superblock of a checked, clean image whose
    /// log was replayed. The log header goes first: its last transaction,
    /// installed already, may hold a copy of the superblock with the bits,
    /// which a later replay would put back.
    public static func remove(_ features: FeatureSet, from device: any BlockDevice, superblock: Superblock) throws {
        var lowered = superblock
        lowered.features = superblock.features.subtracting(features)
        var block = [UInt8](repeating: 0, count: Layout.blockSize)
        try block.withUnsafeBytes { try device.write(block: UInt64(superblock.logStart), from: $0) }
        try device.flush()
        block.withUnsafeMutableBytes { lowered.encode(into: $0) }
        try block.withUnsafeBytes { try device.write(block: Layout.superblockNumber, from: $0) }
        try device.flush()
    }
}
