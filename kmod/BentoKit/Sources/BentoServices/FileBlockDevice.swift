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

    public init(path: String, readOnly: Bool = false, blockSize: Int = 4096) throws(OpenError) {
        let fd = Glibc.open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path, errno) }
        var st = stat()
        var bytes: UInt64 = 0
        if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFBLK {
            // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
            _ = ioctl(fd, 0x8008_1272, &bytes)
        } else {
            bytes = UInt64(max(st.st_size, 0))
        }
        guard bytes >= UInt64(blockSize) else { close(fd); throw .tooSmall(path) }
        self.fd = fd
        self.path = path
        self.blockSize = blockSize
        self.blockCount = bytes / UInt64(blockSize)
    }

    deinit { close(fd) }

    public func read(block: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard block < blockCount, buffer.count == blockSize else { throw Errno.EIO }
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
        var done = 0
        while done < blockSize {
            let n = pwrite(fd, buffer.baseAddress! + done, blockSize - done, off_t(block) * off_t(blockSize) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw n < 0 && errno == ENOSPC ? Errno.ENOSPC : Errno.EIO }
            done += n
        }
    }

    public func flush() throws {
        guard fdatasync(fd) == 0 else { throw Errno.EIO }
    }
}
