import BentoKit
import Glibc

/// A block device over an image file or a Linux block device.
public final class FileBlockDevice: BlockDevice, @unchecked Sendable {
    public let blockSize: Int
    public let blockCount: UInt64
    public let path: String
    private let fd: Int32

    public enum OpenError: Error, CustomStringConvertible {
        case cannotOpen(String, Int32)
        case tooSmall(String)
        public var description: String {
            switch self {
            case .cannotOpen(let path, let err): "cannot open \(path): \(String(cString: strerror(err)))"
            case .tooSmall(let path): "\(path) is smaller than one block"
            }
        }
    }

    /// True when I/O bypasses the kernel's page cache (O_DIRECT).
    public let isDirect: Bool

    /// With `direct`, a block device is used with O_DIRECT: the host's
    /// buffer cache is the only cache, and flush is what makes writes
    /// durable. Image files stay buffered (tmpfs, for one, has no O_DIRECT).
    public convenience init(path: String, readOnly: Bool = false, direct: Bool = false, blockSize: Int = 4096) throws(OpenError) {
        let fd = Glibc.open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path, errno) }
        try self.init(fd: fd, path: path, direct: direct, blockSize: blockSize)
    }

    /// Over `fd`, already open on `path` (a worker process is handed the
    /// image open, and never opens files itself); takes the fd over.
    public init(fd: Int32, path: String, direct: Bool = false, blockSize: Int = 4096) throws(OpenError) {
        var st = stat()
        var bytes: UInt64 = 0
        if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFBLK {
            // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
            _ = ioctl(fd, 0x8008_1272, &bytes)
        } else {
            bytes = UInt64(max(st.st_size, 0))
        }
        guard bytes >= UInt64(blockSize) else { close(fd); throw .tooSmall(path) }
        isDirect = direct && (st.st_mode & S_IFMT) == S_IFBLK && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | Self.oDirect) == 0
        self.fd = fd
        self.path = path
        self.blockSize = blockSize
        self.blockCount = bytes / UInt64(blockSize)
    }

    deinit { close(fd) }

    #if arch(arm64)
    static let oDirect: Int32 = 0o200000
    #else
    static let oDirect: Int32 = 0o40000
    #endif

    /// O_DIRECT wants aligned buffers: others go through an aligned copy.
    private func aligned(_ buffer: UnsafeRawPointer) -> Bool {
        !isDirect || Int(bitPattern: buffer) % 4096 == 0
    }

    public func read(block: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard block < blockCount, buffer.count == blockSize else { throw Errno.EIO }
        guard aligned(buffer.baseAddress!) else {
            let bounce = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 4096)
            defer { bounce.deallocate() }
            try read(block: block, into: bounce)
            buffer.copyMemory(from: UnsafeRawBufferPointer(bounce))
            return
        }
        var done = 0
        while done < blockSize {
            let n = pread(fd, buffer.baseAddress! + done, blockSize - done, off_t(block) * off_t(blockSize) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Errno.EIO }
            done += n
        }
    }

    public func write(block: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        guard block < blockCount, buffer.count == blockSize else { throw Errno.EIO }
        try pwriteWhole(buffer, at: block)
    }

    /// One pwrite for the whole run.
    public func write(blocks first: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        let count = UInt64(buffer.count / blockSize)
        guard buffer.count % blockSize == 0, first < blockCount, count <= blockCount - first else { throw Errno.EIO }
        try pwriteWhole(buffer, at: first)
    }

    /// Writes `buffer`, whole blocks, from block `block` on, through an
    /// aligned copy where O_DIRECT needs one.
    private func pwriteWhole(_ buffer: UnsafeRawBufferPointer, at block: UInt64) throws {
        guard let start = buffer.baseAddress else { return }
        guard aligned(start) else {
            let bounce = UnsafeMutableRawBufferPointer.allocate(byteCount: buffer.count, alignment: 4096)
            defer { bounce.deallocate() }
            bounce.copyMemory(from: buffer)
            try pwriteWhole(UnsafeRawBufferPointer(bounce), at: block)
            return
        }
        var done = 0
        while done < buffer.count {
            let n = pwrite(fd, start + done, buffer.count - done, off_t(block) * off_t(blockSize) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw n < 0 && errno == ENOSPC ? Errno.ENOSPC : Errno.EIO }
            done += n
        }
    }

    public func flush() throws {
        guard fdatasync(fd) == 0 else { throw Errno.EIO }
    }
}
