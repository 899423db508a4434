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
