import FoundationEssentials
import Glibc

public struct ControlClientError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One request, one reply, each on its own connection: what bentoctl does.
public struct ControlClient: Sendable {
    public var path: String
    /// How long to wait for the daemon's reply.
    public var timeout: Double

    public init(path: String = ControlProtocol.defaultSocketPath, timeout: Double = 30) {
        self.path = path
        self.timeout = timeout
    }

    public func send(_ request: ControlRequest) throws(ControlClientError) -> ControlReply {
        let connection = try ControlConnection(path: path, timeout: timeout)
        defer { connection.close() }
        return try connection.send(request)
    }
}

/// A connection to the control socket that can carry several requests in turn.
public final class ControlConnection {
    public let path: String
    private var fd: Int32
    private var reader: LineReader
    private let timeout: Double

    /// Replies can be long (many mounts, a long history); this only guards
    /// against a peer that never ends its line.
    static let maxReplyBytes = 16 << 20

    public init(path: String, timeout: Double = 30) throws(ControlClientError) {
        self.path = path
        self.timeout = timeout
        fd = Socket.make()
        guard fd >= 0 else { throw ControlClientError("cannot create a socket: \(Socket.errorText(errno))") }
        reader = LineReader(fd: fd, limit: Self.maxReplyBytes)
        let result = Socket.connect(fd, to: path)
        guard result == 0 else {
            Glibc.close(fd)
            fd = -1
            let hint: String
            switch result {
            case ENOENT, ECONNREFUSED: hint = " (is the daemon running?)"
            case EACCES, EPERM: hint = " (only root may control bento-upgraded)"
            case ENAMETOOLONG: hint = " (a socket path is at most \(Socket.maxPathBytes) bytes)"
            default: hint = ""
            }
            throw ControlClientError("cannot reach bento-upgraded at \(path): \(Socket.errorText(result))\(hint)")
        }
        Socket.setTimeout(fd, seconds: timeout)
    }

    deinit { close() }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    public func send(_ request: ControlRequest) throws(ControlClientError) -> ControlReply {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(request) else {
            throw ControlClientError("cannot encode the request")
        }
        return try send(line: [UInt8](data))
    }

    /// Sends `line` as it is (a newline is added) and reads the reply: for
    /// tools and tests that need to send what a ControlRequest cannot.
    public func send(line: some Collection<UInt8>) throws(ControlClientError) -> ControlReply {
        guard fd >= 0 else { throw ControlClientError("the connection to bento-upgraded at \(path) is closed") }
        let sendError = Socket.sendAll(fd, Array(line) + [UInt8(ascii: "\n")])
        // Even when sending failed, the daemon may have answered before it
        // closed (a refusal, a request too long): read what it said.
        switch reader.next() {
        case .line(let bytes):
            do {
                return try JSONDecoder().decode(ControlReply.self, from: Data(bytes))
            } catch {
                throw ControlClientError("bento-upgraded at \(path) sent a reply that cannot be read: \(error)")
            }
        case .timeout:
            throw ControlClientError("bento-upgraded at \(path) did not answer within \(Self.seconds(timeout))")
        case .tooLong:
            throw ControlClientError("bento-upgraded at \(path) sent a reply longer than \(Self.maxReplyBytes) bytes")
        case .end, .failed:
            if sendError != 0, sendError != EPIPE, sendError != ECONNRESET {
                throw ControlClientError("cannot send to bento-upgraded at \(path): \(Socket.errorText(sendError))")
            }
            throw ControlClientError("bento-upgraded at \(path) closed the connection without answering")
        }
    }

    private static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
    }
}
