@testable import BentoControl
import Foundation
import Glibc
import Testing

/// The control socket end to end: a real ControlServer on a socket in a
/// fresh directory, real clients, a fake daemon behind the handler.
/// Serialized: one test forks, and a child must not hold other tests' sockets open.
@Suite(.serialized) struct ControlServerTests {
    static let mount = MountStatus(
        mountpoint: "/mnt/bento", image: "/var/lib/bento/bento.img",
        module: ModuleInfo(name: "xv6fs", version: "1.0.0", path: "/usr/local/lib/bento/modules/xv6fs-1.0.0.so"),
        state: .serving, uptimeSeconds: 7384.5,
        operations: ["lookup": 400, "getattr": 1200, "read": 90, "write": 7],
        latencyMicros: LatencySummary(p50: 12, p90: 40, p99: 310, max: 2100))

    /// Counts the requests that reached it; answers like the daemon before its upgrade step.
    final class FakeDaemon: @unchecked Sendable {
        private let lock = NSLock()
        private var seen: [ControlRequest] = []
        let delay: Double
        init(delay: Double = 0) { self.delay = delay }

        var requests: [ControlRequest] { lock.withLock { seen } }

        func handle(_ request: ControlRequest) -> ControlReply {
            lock.withLock { seen.append(request) }
            if delay > 0 { usleep(UInt32(delay * 1_000_000)) }
            switch request.command {
            case .status: return .status([ControlServerTests.mount])
            default: return .failure("\(request.command.rawValue) is not answered by this test server")
            }
        }
    }

    /// A new directory under /tmp (short: sun_path holds 108 bytes), 0755 so
    /// that uid 65534 can reach a socket inside it.
    static func scratchDirectory() -> String {
        var template = Array("/tmp/bento-ctl-XXXXXX".utf8CString)
        let path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        chmod(path, 0o755)
        return path
    }

    static func start(_ daemon: FakeDaemon = FakeDaemon(), idleTimeout: Double = 30,
                      at path: String = scratchDirectory() + "/control.sock") throws -> ControlServer {
        try ControlServer(path: path, idleTimeout: idleTimeout, handler: daemon.handle)
    }

    /// A connected socket that the test drives by hand.
    static func rawConnect(_ path: String) -> Int32 {
        let fd = Socket.make()
        #expect(fd >= 0)
        #expect(Socket.connect(fd, to: path) == 0)
        return fd
    }

    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode : nil
    }

    // MARK: - Requests and replies

    @Test func statusRoundTrip() throws {
        let daemon = FakeDaemon()
        let server = try Self.start(daemon)
        defer { server.stop() }
        let reply = try ControlClient(path: server.path).send(.status)
        #expect(reply == .status([Self.mount]))
        #expect(daemon.requests == [.status])
    }

    @Test func wireFormatKeepsItsKeyNames() throws {
        let server = try Self.start()
        defer { server.stop() }
        let fd = Self.rawConnect(server.path)
        defer { close(fd) }
        #expect(Socket.sendAll(fd, Array("{\"command\": \"status\"}\n".utf8)) == 0)
        var reader = LineReader(fd: fd, limit: 1 << 20)
        guard case .line(let line) = reader.next() else { Issue.record("no reply line"); return }
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        #expect(object["ok"] as? Bool == true)
        #expect(object["error"] == nil)
        let mount = try #require((object["mounts"] as? [[String: Any]])?.first)
        #expect(Set(mount.keys) == ["mountpoint", "image", "module", "state", "uptimeSeconds", "operations", "latencyMicros"])
        #expect(mount["mountpoint"] as? String == "/mnt/bento")
        #expect(Set((mount["module"] as? [String: Any] ?? [:]).keys) == ["name", "version", "path"])
        #expect(Set((mount["latencyMicros"] as? [String: Any] ?? [:]).keys) == ["p50", "p90", "p99", "max"])
        #expect((mount["operations"] as? [String: Any])?["getattr"] as? Int == 1200)
    }

    @Test func malformedJSONGetsAnErrorAndTheConnectionStaysUsable() throws {
        let daemon = FakeDaemon()
        let server = try Self.start(daemon)
        defer { server.stop() }
        let connection = try ControlConnection(path: server.path)
        let cases: [(String, String)] = [
            ("{\"command\": \"status\"", "not valid JSON"),
            ("[1, 2]", "expected a JSON object"),
            ("{\"command\": 3}", "\"command\" must be a string"),
            ("{\"mountpoint\": \"/mnt\"}", "no \"command\""),
            ("", "not valid JSON"),
            ("\u{FF}garbage", "not valid JSON"),
        ]
        for (line, message) in cases {
            let reply = try connection.send(line: Array(line.utf8))
            #expect(!reply.ok, "\(line)")
            #expect(reply.error?.contains("malformed request") == true, "\(line)")
            #expect(reply.error?.contains(message) == true, "\(line): \(reply.error ?? "")")
        }
        #expect(try connection.send(.status) == .status([Self.mount]))
        #expect(daemon.requests == [.status], "nothing malformed reached the handler")
    }

    @Test func unknownCommandAndMissingFields() throws {
        let daemon = FakeDaemon()
        let server = try Self.start(daemon)
        defer { server.stop() }
        let connection = try ControlConnection(path: server.path)
        let unknown = try connection.send(line: Array(#"{"command": "format-disk"}"#.utf8))
        #expect(!unknown.ok)
        #expect(unknown.error == "unknown command \"format-disk\" (known: status, upgrade, rollback, history, reload, mount)")
        let noModule = try connection.send(line: Array(#"{"command": "upgrade", "mountpoint": "/mnt/bento"}"#.utf8))
        #expect(noModule.error == "upgrade needs \"mountpoint\" and \"module\"")
        let noMountpoint = try connection.send(line: Array(#"{"command": "rollback"}"#.utf8))
        #expect(noMountpoint.error == "rollback needs \"mountpoint\"")
        let noImage = try connection.send(line: Array(#"{"command": "mount", "mountpoint": "/srv/x", "module": "/m.so"}"#.utf8))
        #expect(noImage.error == "mount needs \"image\", \"mountpoint\" and \"module\"")
        #expect(daemon.requests.isEmpty)
        // Still usable, and the later commands reach the handler with their fields.
        let upgrade = try connection.send(.upgrade(mountpoint: "/mnt/bento", module: "/lib/xv6fs-2.0.0.so"))
        #expect(upgrade == .failure("upgrade is not answered by this test server"))
        _ = try connection.send(line: Array(#"{"command": "history", "extra": [1, {"x": null}]}"#.utf8))
        let mountRequest = ControlRequest.mount(image: "/srv/x.img", mountpoint: "/srv/x", module: "/lib/xv6fs-1.0.0.so", threads: 4,
                                         cacheMiB: 64, allowOther: true, writebackCache: true)
        _ = try connection.send(mountRequest)
        #expect(daemon.requests == [.upgrade(mountpoint: "/mnt/bento", module: "/lib/xv6fs-2.0.0.so"), .history(), mountRequest])
    }

    @Test func oversizedRequestGetsAnErrorAndTheConnectionCloses() throws {
        let daemon = FakeDaemon()
        let server = try Self.start(daemon)
        defer { server.stop() }
        // Valid JSON, one byte over the limit: refused all the same.
        let prefix = #"{"command": "status", "padding": ""#, suffix = #""}"#
        func request(_ size: Int) -> [UInt8] {
            Array(prefix.utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: size - prefix.utf8.count - suffix.utf8.count) + Array(suffix.utf8)
        }
        let limit = ControlProtocol.maxRequestBytes
        let connection = try ControlConnection(path: server.path)
        #expect(try connection.send(line: request(limit)).ok, "exactly 64 KiB is allowed")
        let reply = try connection.send(line: request(limit + 1))
        #expect(!reply.ok)
        #expect(reply.error == "request too long: more than 65536 bytes without a newline")
        #expect(throws: ControlClientError.self) { try connection.send(.status) }

        // Far longer, and never a newline: the daemon does not wait for one.
        let fd = Self.rawConnect(server.path)
        defer { close(fd) }
        // (The daemon may close before all of it is sent: EPIPE here is fine.)
        _ = Socket.sendAll(fd, [UInt8](repeating: UInt8(ascii: "{"), count: 200_000))
        var reader = LineReader(fd: fd, limit: 1 << 20)
        guard case .line(let line) = reader.next() else { Issue.record("no reply"); return }
        #expect(try JSONDecoder().decode(ControlReply.self, from: Data(line)).error?.hasPrefix("request too long") == true)
        #expect(daemon.requests.count == 1)
    }

    @Test func manyConcurrentClients() throws {
        let daemon = FakeDaemon(delay: 0.1)
        let server = try Self.start(daemon)
        defer { server.stop() }
        let clients = 32, rounds = 3
        final class Errors: @unchecked Sendable {
            let lock = NSLock()
            var list: [String] = []
            func add(_ error: String) { lock.withLock { list.append(error) } }
        }
        let errors = Errors(), group = DispatchGroup()
        let start = Date()
        for _ in 0..<clients {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                do {
                    let connection = try ControlConnection(path: server.path)
                    for _ in 0..<rounds {
                        let reply = try connection.send(.status)
                        if reply != .status([Self.mount]) { errors.add("wrong reply: \(reply)") }
                    }
                } catch {
                    errors.add("\(error)")
                }
            }
        }
        #expect(group.wait(timeout: .now() + 60) == .success)
        let elapsed = Date().timeIntervalSince(start)
        #expect(errors.lock.withLock { errors.list } == [])
        #expect(daemon.requests.count == clients * rounds)
        // One after another would take 32 × 3 × 0.1 s = 9.6 s.
        #expect(elapsed < 4, "served concurrently: \(elapsed) s")
    }

    @Test func aSilentClientDoesNotBlockOthers() throws {
        let server = try Self.start(idleTimeout: 30)
        defer { server.stop() }
        let silent = Self.rawConnect(server.path)
        defer { close(silent) }
        let halfLine = Self.rawConnect(server.path)
        defer { close(halfLine) }
        #expect(Socket.sendAll(halfLine, Array(#"{"command": "sta"#.utf8)) == 0)
        let start = Date()
        #expect(try ControlClient(path: server.path, timeout: 5).send(.status).ok)
        #expect(Date().timeIntervalSince(start) < 2)
    }

    @Test func anIdleConnectionIsClosedAfterTheTimeout() throws {
        let server = try Self.start(idleTimeout: 0.5)
        defer { server.stop() }
        let fd = Self.rawConnect(server.path)
        defer { close(fd) }
        Socket.setTimeout(fd, seconds: 10)
        let start = Date()
        var reader = LineReader(fd: fd, limit: 1024)
        #expect(reader.next() == .end)
        let elapsed = Date().timeIntervalSince(start)
        #expect(elapsed >= 0.4 && elapsed < 5, "\(elapsed) s")
    }

    @Test func tooManyConnectionsAreAnsweredBusy() throws {
        let server = try Self.start()
        defer { server.stop() }
        var idle: [Int32] = []
        defer { idle.forEach { close($0) } }
        for _ in 0..<ControlServer.maxConnections {
            idle.append(Self.rawConnect(server.path))
        }
        // Accepting is asynchronous: wait until the server holds them all.
        var reply: ControlReply?
        for _ in 0..<100 {
            reply = try? ControlClient(path: server.path, timeout: 5).send(.status)
            if reply?.ok == false { break }
            usleep(20_000)
        }
        #expect(reply?.error?.contains("too many control connections") == true)
        close(idle.removeLast())
        var served = false
        for _ in 0..<100 where !served {
            served = (try? ControlClient(path: server.path, timeout: 5).send(.status))?.ok == true
            if !served { usleep(20_000) }
        }
        #expect(served, "a freed slot is used again")
    }

    // MARK: - Who may talk

    /// Forks a child that drops to uid/gid 65534, connects, sends `request`
    /// and reads one line. Everything the child touches is allocated before
    /// fork (another thread may have held malloc's lock), and it only makes
    /// system calls. Returns connect's errno (0: connected) and the reply.
    static func exchangeAsNobody(_ path: String, _ request: String) -> (connectError: Int32, reply: String) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8) + [0])
        }
        let line = Array((request + "\n").utf8)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 8)
        defer { buffer.deallocate() }
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        let (readEnd, writeEnd) = (ends[0], ends[1])
        var timeout = timeval(tv_sec: 5, tv_usec: 0)

        let pid = fork()
        if pid == 0 {
            close(readEnd)
            guard setgroups(0, nil) == 0, setgid(65534) == 0, setuid(65534) == 0, getuid() == 65534 else { _exit(2) }
            var result: Int32 = 0
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if connected != 0 { result = errno }
            _ = write(writeEnd, &result, 4)
            if connected == 0 {
                _ = line.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                while true {
                    let n = recv(fd, buffer, 4096, 0)
                    if n <= 0 { break }
                    _ = write(writeEnd, buffer, n)
                }
            }
            _exit(0)
        }
        close(writeEnd)
        #expect(pid > 0)
        var output = [UInt8]()
        while true {
            let n = read(readEnd, buffer, 4096)
            if n <= 0 { break }
            output += UnsafeRawBufferPointer(start: buffer, count: n)
        }
        close(readEnd)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        #expect(status == 0, "the child could not become uid 65534 (exit status \(status >> 8))")
        guard output.count >= 4 else { return (-1, "") }
        let connectError = output.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }
        return (connectError, String(decoding: output[4...], as: UTF8.self))
    }

    @Test func nonRootPeersAreRefused() throws {
        let daemon = FakeDaemon()
        let server = try Self.start(daemon)
        defer { server.stop() }

        // The file mode alone keeps them out.
        #expect(Self.exchangeAsNobody(server.path, #"{"command": "status"}"#).connectError == EACCES)

        // With the file opened up, SO_PEERCRED is what refuses.
        #expect(chmod(server.path, 0o666) == 0)
        let (connectError, text) = Self.exchangeAsNobody(server.path, #"{"command": "status"}"#)
        #expect(connectError == 0)
        let reply = try JSONDecoder().decode(ControlReply.self, from: Data(text.utf8))
        #expect(reply == .failure("permission denied: only root may control bento-upgraded"))
        #expect(text.hasSuffix("\n") && text.filter { $0 == "\n" }.count == 1, "one reply line, then closed: \(text)")
        #expect(daemon.requests.isEmpty)

        // Root still gets through.
        #expect(try ControlClient(path: server.path).send(.status).ok)
    }

    // MARK: - The socket file

    @Test func socketFileIsPrivateAndItsDirectoryIsCreated() throws {
        let base = Self.scratchDirectory()
        let path = base + "/run/bento/control.sock"
        let server = try Self.start(at: path)
        defer { server.stop() }
        let mode = try #require(Self.mode(path))
        #expect(mode & S_IFMT == S_IFSOCK)
        #expect(mode & 0o7777 == 0o600)
        #expect(Self.mode(base + "/run").map { $0 & 0o7777 } == 0o755)
        #expect(Self.mode(base + "/run/bento").map { $0 & 0o7777 } == 0o755)
    }

    @Test func staleSocketIsReplacedButALiveOneOrAFileIsNot() throws {
        let directory = Self.scratchDirectory()
        // A socket file left by a process that died: bound, never unlinked.
        let path = directory + "/control.sock"
        let stale = Socket.make()
        #expect(Socket.withAddress(path) { bind(stale, $0, $1) } == 0)
        close(stale)
        #expect(Self.mode(path).map { $0 & S_IFMT } == S_IFSOCK)
        let server = try Self.start(at: path)
        defer { server.stop() }
        #expect(try ControlClient(path: path).send(.status).ok)

        let live = #expect(throws: ControlServerError.self) { _ = try Self.start(at: path) }
        #expect(live?.description == "another process is already listening at \(path) (is bento-upgraded running?)")
        #expect(try ControlClient(path: path).send(.status).ok, "the first server keeps its socket")

        let file = directory + "/not-a-socket"
        #expect(FileManager.default.createFile(atPath: file, contents: Data("keep".utf8)))
        let notSocket = #expect(throws: ControlServerError.self) { _ = try Self.start(at: file) }
        #expect(notSocket?.description == "\(file) exists and is not a socket; not replacing it")
        #expect(FileManager.default.contents(atPath: file) == Data("keep".utf8))
    }

    @Test func stopRemovesTheSocketAndEndsConnections() throws {
        let server = try Self.start()
        let path = server.path
        let open = try ControlConnection(path: path)
        #expect(try open.send(.status).ok)
        let start = Date()
        server.stop()
        #expect(Date().timeIntervalSince(start) < 5, "stop does not wait for idle clients")
        #expect(Self.mode(path) == nil)
        #expect(throws: ControlClientError.self) { try open.send(.status) }
        let gone = #expect(throws: ControlClientError.self) { try ControlClient(path: path).send(.status) }
        #expect(gone?.description == "cannot reach bento-upgraded at \(path): No such file or directory (is the daemon running?)")
        server.stop()   // twice is harmless
    }

    @Test func clientErrorsSayWhatToDo() throws {
        let directory = Self.scratchDirectory()
        let missing = #expect(throws: ControlClientError.self) { try ControlClient(path: directory + "/none.sock").send(.status) }
        #expect(missing?.description == "cannot reach bento-upgraded at \(directory)/none.sock: No such file or directory (is the daemon running?)")
        // A socket nobody listens on any more.
        let path = directory + "/dead.sock"
        let dead = Socket.make()
        #expect(Socket.withAddress(path) { bind(dead, $0, $1) } == 0)
        close(dead)
        let refused = #expect(throws: ControlClientError.self) { try ControlClient(path: path).send(.status) }
        #expect(refused?.description == "cannot reach bento-upgraded at \(path): Connection refused (is the daemon running?)")
        // A daemon that never answers.
        let server = try ControlServer(path: directory + "/slow.sock") { _ in
            usleep(1_000_000)
            return .status([])
        }
        defer { server.stop() }
        let slow = #expect(throws: ControlClientError.self) { try ControlClient(path: server.path, timeout: 0.3).send(.status) }
        #expect(slow?.description == "bento-upgraded at \(server.path) did not answer within 0.3 s")
    }
}

/// The protocol types and the text bentoctl prints, without a socket.
struct ControlProtocolTests {
    @Test func requestsEncodeAsDocumented() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        func json(_ request: ControlRequest) throws -> String { String(decoding: try encoder.encode(request), as: UTF8.self) }
        #expect(try json(.status) == #"{"command":"status"}"#)
        #expect(try json(.upgrade(mountpoint: "/mnt/b", module: "/m/x.so")) == #"{"command":"upgrade","module":"/m/x.so","mountpoint":"/mnt/b"}"#)
        #expect(try json(.rollback(mountpoint: "/mnt/b")) == #"{"command":"rollback","mountpoint":"/mnt/b"}"#)
        #expect(try json(.history()) == #"{"command":"history"}"#)
        #expect(try ControlRequest.decode(line: Array(#"{"command":"history","mountpoint":"/mnt/b"}"#.utf8)) == .history(mountpoint: "/mnt/b"))
    }

    @Test func repliesEncodeAsDocumented() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        #expect(String(decoding: try encoder.encode(ControlReply.failure("no")), as: UTF8.self) == #"{"error":"no","ok":false}"#)
        let report = UpgradeReport(result: UpgradeReport.upgraded, fromVersion: "1.0.0", toVersion: "2.0.0", pauseMicros: 12_300, stateBytes: 4096)
        #expect(String(decoding: try encoder.encode(ControlReply(ok: true, upgrade: report)), as: UTF8.self)
                == #"{"ok":true,"upgrade":{"fromVersion":"1.0.0","pauseMicros":12300,"result":"upgraded","stateBytes":4096,"toVersion":"2.0.0"}}"#)
        // A newer daemon's extra fields do not break an older bentoctl.
        let newer = #"{"ok":true,"mounts":[],"daemonVersion":"9","upgrade":{"result":"upgraded","newField":1}}"#
        #expect(try JSONDecoder().decode(ControlReply.self, from: Data(newer.utf8))
                == ControlReply(ok: true, mounts: [], upgrade: UpgradeReport(result: .upgraded)))
    }

    @Test func statusText() {
        let text = TextReport.status([ControlServerTests.mount])
        #expect(text == """
            /mnt/bento
              module    xv6fs 1.0.0  (/usr/local/lib/bento/modules/xv6fs-1.0.0.so)
              image     /var/lib/bento/bento.img
              state     serving, up 2h 03m
              ops       1697 total: getattr 1200, lookup 400, read 90, write 7
              latency   p50 12 µs  p90 40 µs  p99 310 µs  max 2.1 ms

            """)
        #expect(TextReport.status([]) == "no mounts\n")
        var holding = ControlServerTests.mount
        holding.heldInodes = 1200
        holding.heldHandles = 35
        #expect(TextReport.status([holding]).contains("max 2.1 ms\n  kernel    holds 1200 inodes, 35 open handles\n"))
        holding.kernelCacheSeconds = 86400
        #expect(TextReport.status([holding]).contains("35 open handles; caches names and attributes for 1d 0h\n"))
        holding.writeOnlyPastPageCache = true
        #expect(TextReport.status([holding]).contains("for 1d 0h; write-only handles write past its page cache\n"))
        holding.writeOnlyPastPageCache = false
        holding.kernelCachesWrites = true
        #expect(TextReport.status([holding]).contains("caches names and attributes for 1d 0h, and writes (writeback cache)\n"))
        holding.cache = CacheStatus(capacityBytes: 256 << 20, allocatedBytes: 16 << 20, cachedBytes: 12 << 20,
                                    dirtyBytes: 120 << 10, hits: 971, misses: 29)
        holding.residentBytes = 45 << 20
        holding.peakResidentBytes = 60 << 20
        #expect(TextReport.status([holding]).contains(
            "\n  cache     12.0 MiB of 256.0 MiB, 120.0 KiB dirty, 97.1% hits; worker 45.0 MiB resident, peak 60.0 MiB\n"))
        holding.cache?.allocatedBytes = 300 << 20
        #expect(TextReport.status([holding]).contains("97.1% hits (holds 300.0 MiB: all dirty or pinned);"))
        // Pressure: a line per condition counted, the first named.
        var pressed = ControlServerTests.mount
        pressed.pressure = [
            PressureCount(condition: "provenance not recorded", error: "ENOSPC", count: 12_000, lastSecondsAgo: 3.4, ongoing: true),
            PressureCount(condition: "requests failed", error: "ENOSPC", count: 12_345, lastSecondsAgo: 125, ongoing: false),
            PressureCount(condition: "requests failed", error: "EIO", count: 0, lastSecondsAgo: 0, ongoing: false),
        ]
        #expect(TextReport.status([pressed]).hasSuffix("""
              latency   p50 12 µs  p90 40 µs  p99 310 µs  max 2.1 ms
              pressure  provenance not recorded (ENOSPC) 12000, last 3s ago
                        requests failed (ENOSPC) 12345, last 2m 05s ago

            """))
    }

    @Test func pressureInJSON() throws {
        var pressed = ControlServerTests.mount
        pressed.pressure = [PressureCount(condition: "requests failed", error: "ENOSPC", count: 7, lastSecondsAgo: 1.5, ongoing: true)]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(pressed.pressure), as: UTF8.self)
        #expect(json == #"[{"condition":"requests failed","count":7,"error":"ENOSPC","lastSecondsAgo":1.5,"ongoing":true}]"#)
        let back = try JSONDecoder().decode(MountStatus.self, from: try encoder.encode(pressed))
        #expect(back == pressed)
        // A daemon before pressure counts sends none.
        #expect(try JSONDecoder().decode(MountStatus.self, from: try encoder.encode(ControlServerTests.mount)).pressure == nil)
    }

    @Test func upgradeAndHistoryText() {
        let upgraded = UpgradeReport(result: .upgraded, action: .upgrade, mountpoint: "/mnt/bento", fromVersion: "1.0.0",
                                     toVersion: "2.0.0", pauseMicros: 12_345, stateBytes: 4096, time: "2025-01-31T12:00:00Z")
        #expect(TextReport.upgrade(upgraded) == "upgraded /mnt/bento: 1.0.0 -> 2.0.0, paused 12.3 ms, state 4.0 KiB\n")
        var kept = upgraded
        kept.stateFormat = "xv6fs/3"; kept.heldInodes = 100_000; kept.heldHandles = 15_000; kept.tableCopied = false
        #expect(TextReport.upgrade(kept) == "upgraded /mnt/bento: 1.0.0 -> 2.0.0, paused 12.3 ms, state 4.0 KiB (xv6fs/3), "
                + "100000 inodes and 15000 handles kept in place\n")
        kept.tableCopied = true
        #expect(TextReport.upgrade(kept).contains("handles copied through the state (slow: a version that keeps its own table)"))
        let refused = UpgradeReport(result: .refused, mountpoint: "/mnt/bento", error: "ABI version 2, need 1")
        #expect(TextReport.upgrade(refused) == "upgrade of /mnt/bento refused (ABI version 2, need 1)\n")
        let failed = UpgradeReport(result: .rolledBack, action: .upgrade, mountpoint: "/mnt/bento", fromVersion: "1.0.0",
                                   toVersion: "2.0.0", pauseMicros: 900, error: "import failed")
        #expect(TextReport.upgrade(failed) == "upgrade of /mnt/bento to 2.0.0 rolled back, still 1.0.0, paused 900 µs (import failed)\n")
        let rollback = UpgradeReport(result: .rolledBack, action: .rollback, mountpoint: "/mnt/bento", fromVersion: "2.0.0",
                                     toVersion: "1.0.0", pauseMicros: 1_100)
        #expect(TextReport.upgrade(rollback) == "rolled back /mnt/bento: 2.0.0 -> 1.0.0, paused 1.1 ms\n")
        #expect(TextReport.history([upgraded]) == "2025-01-31T12:00:00Z  upgrade: " + TextReport.upgrade(upgraded))
        #expect(TextReport.history([]) == "no upgrades yet\n")
    }

    @Test func units() {
        #expect(TextReport.duration(seconds: 42) == "42s")
        #expect(TextReport.duration(seconds: 312) == "5m 12s")
        #expect(TextReport.duration(seconds: 3 * 86400 + 4 * 3600 + 5) == "3d 4h")
        #expect(TextReport.micros(999) == "999 µs")
        #expect(TextReport.micros(1_000) == "1.0 ms")
        #expect(TextReport.micros(1_500_000) == "1.50 s")
        #expect(TextReport.bytes(512) == "512 B")
        #expect(TextReport.bytes(1536) == "1.5 KiB")
        #expect(TextReport.bytes(3 << 20) == "3.0 MiB")
    }
}
