import Glibc

/// One reply buffer per request thread, kept between requests: a 1 MiB read
/// would otherwise cost an mmap, page faults and an munmap every time.
enum ThreadBuffer {
    private final class Buffer {
        var memory: UnsafeMutableRawBufferPointer
        init(_ size: Int) { memory = .allocate(byteCount: size, alignment: 4096) }
        deinit { memory.deallocate() }
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { pointer in
            if let pointer { Unmanaged<Buffer>.fromOpaque(pointer).release() }
        }
        return key
    }()

    /// This thread's buffer, at least `size` bytes long.
    static func get(_ size: Int) -> UnsafeMutableRawBufferPointer {
        if let pointer = pthread_getspecific(key) {
            let buffer = Unmanaged<Buffer>.fromOpaque(pointer).takeUnretainedValue()
            if buffer.memory.count >= size { return buffer.memory }
            Unmanaged<Buffer>.fromOpaque(pointer).release()
        }
        let buffer = Buffer(max(size, 1 << 20))
        pthread_setspecific(key, Unmanaged.passRetained(buffer).toOpaque())
        return buffer.memory
    }
}

/// The buffer libfuse gives each loop thread to read requests into, with
/// its pages mapped before the first read. The kernel copies a request in
/// by pinning the buffer's pages; a page not yet mapped needs a fault,
/// which fails while the process is being killed, and the kernel then ends
/// that request with EIO instead of leaving it for the next worker to be
/// resent (seen as an EIO from close or fsync when a worker died).
enum ReadBuffer {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Maps the pages of `buffer` once per thread and buffer.
    static func prefault(_ buffer: UnsafeMutableRawPointer, _ length: Int) {
        let done: UnsafeMutableRawPointer? = pthread_getspecific(key)
        guard done != buffer else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: buffer) & ~(page - 1)
        let end = Int(bitPattern: buffer) + length
        // MADV_POPULATE_WRITE (Linux 5.14); on older kernels, one write per page.
        if madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, 23) != 0 {
            for offset in stride(from: 0, to: length, by: page) { buffer.storeBytes(of: 0, toByteOffset: offset, as: UInt8.self) }
        }
        pthread_setspecific(key, buffer)
    }
}
