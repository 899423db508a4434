import BentoKit

/// The first `blockCount` blocks of another device: formats part of a block
/// device when --size is smaller than it.
final class LimitedBlockDevice: BlockDevice {
    let base: any BlockDevice
    let blockCount: UInt64
    var blockSize: Int { base.blockSize }

    init(_ base: any BlockDevice, blockCount: UInt64) {
        self.base = base
        self.blockCount = min(blockCount, base.blockCount)
    }

    func read(block: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard block < blockCount else { throw Errno.EIO }
        try base.read(block: block, into: buffer)
    }

    func write(block: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        guard block < blockCount else { throw Errno.EIO }
        try base.write(block: block, from: buffer)
    }

    func flush() throws {
        try base.flush()
    }
}
