import BentoKit
import Glibc

/// A block device in RAM: for tests, benchmarks and tools working on copies.
public final class MemoryBlockDevice: BlockDevice, @unchecked Sendable {
    public let blockSize: Int
    public let blockCount: UInt64
    private let storage: UnsafeMutableRawPointer

    public init(blockCount: UInt64, blockSize: Int = 4096) {
        self.blockSize = blockSize
        self.blockCount = blockCount
        storage = UnsafeMutableRawPointer.allocate(byteCount: Int(blockCount) * blockSize, alignment: 4096)
        memset(storage, 0, Int(blockCount) * blockSize)
    }

    /// A device holding a copy of `image`, whose length must be a multiple of the block size.
    public convenience init(image: [UInt8], blockSize: Int = 4096) {
        self.init(blockCount: UInt64(image.count / blockSize), blockSize: blockSize)
        image.withUnsafeBytes { storage.copyMemory(from: $0.baseAddress!, byteCount: Int(blockCount) * blockSize) }
    }

    deinit { storage.deallocate() }

    /// A copy of the whole device.
    public func snapshot() -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: storage, count: Int(blockCount) * blockSize))
    }

    public func read(block: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard block < blockCount, buffer.count == blockSize else { throw Errno.EIO }
        buffer.baseAddress!.copyMemory(from: storage + Int(block) * blockSize, byteCount: blockSize)
    }

    public func write(block: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        guard block < blockCount, buffer.count == blockSize else { throw Errno.EIO }
        (storage + Int(block) * blockSize).copyMemory(from: buffer.baseAddress!, byteCount: blockSize)
    }

    public func flush() throws {}
}
