import Glibc

/// The few socket calls both ends need, over plain file descriptors.
enum Socket {
    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// A Unix stream socket that is not inherited by child processes.
    static func make() -> Int32 {
        socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    /// `sun_path` holds 108 bytes with the terminating NUL.
    static let maxPathBytes = MemoryLayout<sockaddr_un>.size - MemoryLayout<sa_family_t>.size - 1

    /// Calls `body` with the address of `path`; nil when the path is too long.
    static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R? {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= maxPathBytes else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }

    /// connect(2); returns 0 or an errno.
    static func connect(_ fd: Int32, to path: String) -> Int32 {
        let result = withAddress(path) { address, length -> Int32 in
            while Glibc.connect(fd, address, length) != 0 {
                if errno != EINTR { return errno }
            }
            return 0
        }
        return result ?? ENAMETOOLONG
    }

    /// Bounds every recv and send, so neither end waits on the other forever.
    static func setTimeout(_ fd: Int32, seconds: Double) {
        let whole = Int(seconds)
        var value = timeval(tv_sec: whole, tv_usec: Int((seconds - Double(whole)) * 1_000_000))
        let size = socklen_t(MemoryLayout<timeval>.size)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, size)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, size)
    }

    /// struct ucred (Glibc's module map leaves it out).
    struct PeerCredentials {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    static func peerCredentials(_ fd: Int32) -> PeerCredentials? {
        var credentials = PeerCredentials()
        var length = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0,
              Int(length) == MemoryLayout<PeerCredentials>.size else { return nil }
        return credentials
    }

    /// Sends all of `bytes`; returns 0 or an errno. MSG_NOSIGNAL: a peer
    /// that went away is an error here, not a SIGPIPE that ends the daemon.
    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32 {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            sent += n
        }
        return 0
    }
}

/// Newline-terminated lines from a socket, each at most `limit` bytes.
struct LineReader {
    enum Next: Equatable {
        case line([UInt8])
        /// More than `limit` bytes without a newline.
        case tooLong
        /// The peer closed its end between lines.
        case end
        /// Nothing arrived within the socket's receive timeout.
        case timeout
        case failed(Int32)
    }

    let fd: Int32
    let limit: Int
    private var buffer: [UInt8] = []
    /// How much of `buffer` is known to hold no newline.
    private var scanned = 0

    init(fd: Int32, limit: Int) {
        self.fd = fd
        self.limit = limit
    }

    mutating func next() -> Next {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let newline = buffer[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                scanned = 0
                if line.count > limit { return .tooLong }
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                return .line(line)
            }
            scanned = buffer.count
            if buffer.count > limit { return .tooLong }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer.append(contentsOf: chunk[..<n])
            } else if n == 0 {
                // A last line without its newline still counts.
                guard !buffer.isEmpty else { return .end }
                defer { buffer.removeAll(); scanned = 0 }
                return .line(buffer)
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                return .timeout
            } else {
                return .failed(errno)
            }
        }
    }
}
