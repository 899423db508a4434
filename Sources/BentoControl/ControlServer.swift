import FoundationEssentials
import Glibc

public struct ControlServerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The daemon's end of the control socket.
///
/// One thread accepts; each connection gets its own thread, so a slow or
/// silent client never holds up another. Only root peers (SO_PEERCRED) are
/// served. A bad line gets an error reply and the connection stays usable;
/// an oversized one gets an error reply and the connection is closed.
/// Nothing a client sends reaches the handler unless it decoded cleanly.
public final class ControlServer: @unchecked Sendable {
    /// Called on a connection's thread, possibly on several at once.
    public typealias Handler = @Sendable (ControlRequest) -> ControlReply

    public static let refusal = "permission denied: only root may control bento-upgraded"
    /// Connections served at once; more are answered with an error and closed.
    public static let maxConnections = 64

    public let path: String
    /// A connection that sends nothing for this long is closed; also bounds
    /// how long a reply may wait for a client that does not read.
    public let idleTimeout: Double

    private let handler: Handler
    private let log: @Sendable (String) -> Void
    private let listener: Int32
    /// Written by stop() to wake the accept thread out of poll().
    private let wake: (read: Int32, write: Int32)
    /// Which file we bound, so stop() never removes a socket someone else made later.
    private let boundFile: (device: UInt, inode: UInt)

    private let lock = Condition()
    private var connections: Set<Int32> = []
    private var stopping = false
    private var accepting = true

    /// Binds `path` (0600; the parent directory is created 0755 if missing;
    /// a stale socket file is replaced, a live one is not) and starts accepting.
    /// - Parameters:
    ///   - log: one line per notable event (refused peers, accept failures).
    ///   - handler: answers each decoded request.
    public init(path: String = ControlProtocol.defaultSocketPath, idleTimeout: Double = 30,
                log: @escaping @Sendable (String) -> Void = { _ in },
                handler: @escaping Handler) throws(ControlServerError) {
        self.path = path
        self.idleTimeout = idleTimeout
        self.handler = handler
        self.log = log
        guard path.utf8.count <= Socket.maxPathBytes else {
            throw ControlServerError("control socket path is too long (at most \(Socket.maxPathBytes) bytes): \(path)")
        }
        try Self.makeParentDirectory(of: path)
        try Self.removeStaleSocket(at: path)

        let fd = Socket.make()
        guard fd >= 0 else { throw ControlServerError("cannot create a socket: \(Socket.errorText(errno))") }
        func fail(_ what: String) -> ControlServerError {
            let error = ControlServerError("\(what) \(path): \(Socket.errorText(errno))")
            close(fd)
            return error
        }
        guard Socket.withAddress(path, { bind(fd, $0, $1) }) == 0 else { throw fail("cannot bind") }
        // Before listen(): until then nobody can connect, whatever the umask gave the file.
        guard chmod(path, 0o600) == 0 else { throw fail("cannot chmod 0600") }
        var info = stat()
        guard lstat(path, &info) == 0 else { throw fail("cannot stat") }
        boundFile = (UInt(info.st_dev), UInt(info.st_ino))
        guard listen(fd, 64) == 0 else {
            let error = fail("cannot listen on")
            unlink(path)
            throw error
        }
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else {
            let error = fail("cannot make a wake-up pipe for")
            unlink(path)
            throw error
        }
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        listener = fd
        wake = (pipeEnds[0], pipeEnds[1])
        Thread.start { [self] in acceptLoop() }
    }

    /// Stops accepting, closes the socket and removes its file, ends open
    /// connections, and returns once no handler call is running.
    public func stop() {
        lock.lock()
        guard !stopping else { lock.unlock(); return }
        stopping = true
        lock.unlock()

        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
        lock.lock()
        while accepting { lock.wait() }
        lock.unlock()
        close(listener)
        var info = stat()
        if lstat(path, &info) == 0, UInt(info.st_dev) == boundFile.device, UInt(info.st_ino) == boundFile.inode {
            unlink(path)
        }

        lock.lock()
        // Their threads see end-of-file (or a failed send) and finish.
        for fd in connections { shutdown(fd, Int32(SHUT_RDWR)) }
        while !connections.isEmpty { lock.wait() }
        lock.unlock()
        close(wake.read)
        close(wake.write)
    }

    // MARK: - Accepting

    private func acceptLoop() {
        defer {
            lock.lock()
            accepting = false
            lock.broadcast()
            lock.unlock()
        }
        var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
        while true {
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                log("control socket: poll failed: \(Socket.errorText(errno)); no longer accepting")
                return
            }
            if fds[1].revents != 0 { return }
            guard fds[0].revents != 0 else { continue }
            // (accept4 and pipe2 are not in Swift's Glibc module: set FD_CLOEXEC after.)
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                switch errno {
                case EINTR, EAGAIN, ECONNABORTED: break
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    log("control socket: cannot accept: \(Socket.errorText(errno))")
                    usleep(100_000)   // the pending connection stays ready: do not spin
                default:
                    log("control socket: accept failed: \(Socket.errorText(errno))")
                }
                continue
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            Socket.setTimeout(fd, seconds: idleTimeout)
            lock.lock()
            let admitted = !stopping && connections.count < Self.maxConnections
            if admitted { connections.insert(fd) }
            lock.unlock()
            guard admitted else {
                send(.failure("bento-upgraded is busy: too many control connections, try again"), to: fd)
                close(fd)
                continue
            }
            Thread.start { [self] in
                serve(fd)
                lock.lock()
                connections.remove(fd)
                close(fd)
                lock.broadcast()
                lock.unlock()
            }
        }
    }

    // MARK: - One connection

    private func serve(_ fd: Int32) {
        guard let peer = Socket.peerCredentials(fd) else {
            log("control socket: cannot read the peer's credentials: \(Socket.errorText(errno)); refused")
            send(.failure(Self.refusal), to: fd)
            hangUp(fd)
            return
        }
        guard peer.uid == 0 else {
            log("control socket: refused pid \(peer.pid) (uid \(peer.uid)): only root may control bento-upgraded")
            send(.failure(Self.refusal), to: fd)
            hangUp(fd)
            return
        }
        var reader = LineReader(fd: fd, limit: ControlProtocol.maxRequestBytes)
        while true {
            switch reader.next() {
            case .line(let line):
                guard send(reply(to: line), to: fd) else { return }
            case .tooLong:
                send(.failure("request too long: more than \(ControlProtocol.maxRequestBytes) bytes without a newline"), to: fd)
                hangUp(fd)
                return
            case .end, .timeout, .failed:
                return
            }
        }
    }

    /// Ends a connection after a final reply so that the client can still
    /// read it: closing with unread input would reset the connection and
    /// could destroy the reply in flight. Reads what is left, briefly.
    private func hangUp(_ fd: Int32) {
        shutdown(fd, Int32(SHUT_WR))
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        var drained = 0
        while drained < 1 << 20 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return }
            drained += n
        }
    }

    private func reply(to line: [UInt8]) -> ControlReply {
        do {
            return handler(try ControlRequest.decode(line: line))
        } catch {
            return .failure(error.description)
        }
    }

    @discardableResult
    private func send(_ reply: ControlReply, to fd: Int32) -> Bool {
        var bytes = (try? Self.encoder.encode(reply)).map { [UInt8]($0) }
            ?? Array(#"{"ok":false,"error":"bento-upgraded could not encode its reply"}"#.utf8)
        bytes.append(UInt8(ascii: "\n"))
        return Socket.sendAll(fd, bytes) == 0
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    // MARK: - The socket file

    /// mkdir -p, new directories 0755 whatever the umask.
    private static func makeParentDirectory(of path: String) throws(ControlServerError) {
        // The directory part: everything before the last "/".
        guard let slash = path.lastIndex(of: "/") else { return }
        let parent = String(path[..<slash])
        guard !parent.isEmpty else { return }
        var prefix = parent.hasPrefix("/") ? "" : "."
        for component in parent.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o755) == 0 {
                chmod(prefix, 0o755)
            } else if errno != EEXIST {
                throw ControlServerError("cannot create \(prefix) for the control socket: \(Socket.errorText(errno))")
            }
        }
    }

    /// A socket file nobody listens on is left over from a daemon that died:
    /// remove it. Anything else at the path is not ours to remove.
    private static func removeStaleSocket(at path: String) throws(ControlServerError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw ControlServerError("\(path) exists and is not a socket; not replacing it")
        }
        let probe = Socket.make()
        if probe >= 0 {
            let result = Socket.connect(probe, to: path)
            close(probe)
            if result == 0 {
                throw ControlServerError("another process is already listening at \(path) (is bento-upgraded running?)")
            }
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw ControlServerError("cannot remove the stale socket \(path): \(Socket.errorText(errno))")
        }
    }
}
