import BentoKit
import BentoServices
import CBentoFlusher
import CFlightRecorder
import CFuse3
import Glibc
import Synchronization

/// Serves one mounted module instance through libfuse's low-level API:
/// every request passes the gate, goes to the active instance, and is
/// answered; a module error becomes an errno reply, never a hung request.
public final class FuseServer: @unchecked Sendable {
    /// The instance requests go to. Swapped only while the gate is closed.
    public var fileSystem: any FileSystem
    public let gate = Gate()
    public let stats = RequestStats()
    /// Failures that recur per request under pressure (a full disk, a
    /// failing device), counted and logged once per condition.
    public let pressure: PressureLog
    /// How long the kernel may cache names (and their absence) and
    /// attributes: `longTimeout` once INIT shows a kernel that can be told
    /// to drop every cached name at once, as it is at each upgrade,
    /// rollback and restart (`forgetCachedNames`); else the short timeout
    /// given at init.
    public var timeout: Double { cachesNames ? Self.longTimeout : shortTimeout }
    private let shortTimeout: Double
    /// The kernel can drop every cached name at once: names are cached
    /// long, and so are negative answers (Docs/caching.md). Set at INIT.
    var cachesNames: Bool { kernelDropsNames.load(ordering: .relaxed) }
    private let kernelDropsNames = Atomic<Bool>(false)
    static let longTimeout: Double = 24 * 3600
    /// The protocol version that brought FUSE_NOTIFY_INC_EPOCH.
    static let epochMinor: UInt32 = 44
    /// Whether to ask for the kernel's writeback cache.
    let writebackCache: Bool
    /// How the loop threads wait for requests.
    let waiter: RequestWaiter
    /// FORGETs read and not yet done, which STATFS waits for.
    let forgets = ForgetsInFlight()
    /// FORGETs kept for when the daemon would otherwise wait.
    let deferredForgets = DeferredForgets()
    /// Whether to ask the kernel to enforce POSIX ACLs (the module stores
    /// them: `BentoModule.posixACL`). Asked at INIT only: the kernel keeps
    /// what it agreed for the whole mount, whatever module comes later.
    let posixACL: Bool
    /// Keeps cached writes from outrunning the disk (nil: not checked).
    let space: SpaceGuard?
    /// Flushes running before GETATTR checks, and how many may run at once.
    let flushesRunning = Atomic<Int>(0)
    private(set) var maxFlushes = 8
    /// The child that writes dirty pages back for the checks and sends the
    /// notifications that may wait on a request (nil: none could start).
    private(set) var flusher: UnsafeMutablePointer<bento_flusher>?
    private(set) var session: OpaquePointer?
    public private(set) var fd: Int32 = -1
    /// What was agreed at INIT; nil until the kernel's INIT is answered.
    private let agreed = Guarded<Negotiated?>(nil)
    /// The INIT request read and not yet answered (the reading thread's).
    private var pendingInit: [UInt8]?
    /// Its unique id until its reply is written (0: none to amend).
    private let initUnique = Atomic<UInt64>(0)
    /// Whether the kernel owns O_APPEND (see `moduleOpenFlags`).
    private let kernelAppends = Atomic<Bool>(false)
    /// Set while an adopted session is shown the saved INIT: its reply is
    /// not written.
    private var swallowReplies = false

    /// What the kernel and this server agreed at INIT, kept so that a
    /// process taking the session over can be shown the same.
    public struct Negotiated: Sendable {
        /// The kernel's INIT request as first read.
        public let initRequest: [UInt8]
        /// The kernel caches writes (FUSE writeback cache) and so computes
        /// every write's offset itself, appends included.
        public let writebackCache: Bool
        public init(initRequest: [UInt8], writebackCache: Bool) {
            self.initRequest = initRequest
            self.writebackCache = writebackCache
        }
    }

    /// nil until the kernel's INIT has been answered.
    public var negotiated: Negotiated? { agreed.withLock { $0 } }

    /// Requests never to run again (unique ids without the resend bit):
    /// each faulted or hung a worker before. Answered EIO when the kernel
    /// resends them (counted in `pressure`); set before `run`.
    public var quarantine: Set<UInt64> = []

    /// `timeout`: how long the kernel may cache names and attributes when
    /// it cannot be told to drop them all at once.
    /// `pollMicroseconds`: how long the reading thread polls for the next
    /// request before it sleeps (RequestWaiter; 0: never).
    public init(fileSystem: any FileSystem, timeout: Double = 1.0, writebackCache: Bool = true,
                posixACL: Bool = false, space: SpaceGuard? = nil, pressure: PressureLog = PressureLog(),
                pollMicroseconds: Int = 0) {
        self.waiter = RequestWaiter(pollMicroseconds: pollMicroseconds)
        self.fileSystem = fileSystem
        self.pressure = pressure
        self.shortTimeout = timeout
        self.writebackCache = writebackCache
        self.posixACL = posixACL
        self.space = space
        // Before the first request: a new process (a restart, a worker
        // after a death) must know at once whether writes are checked.
        if space != nil { _ = try? lookAtFreeSpace(fileSystem, .root) }
    }

    public struct Failure: Error, CustomStringConvertible { public let description: String }

    /// Attaches to the /dev/fuse fd of a fresh mount.
    public func attach(fd: Int32) throws(Failure) {
        session = try makeSession(fd: fd)
        self.fd = fd
        startFlusher()
    }

    /// Takes over the session of a mount another process served (a
    /// restarted daemon, with the fd from systemd's fd store): the new
    /// libfuse session is shown the kernel's INIT request as first read,
    /// and its reply, which the kernel does not expect twice, is dropped.
    /// `writebackCache` is what the kernel was told at the real INIT: it
    /// holds whatever this server's settings say now.
    public func adopt(fd: Int32, initRequest: [UInt8], writebackCache: Bool) throws(Failure) {
        let session = try makeSession(fd: fd)
        pendingInit = initRequest
        swallowReplies = true
        var buf = fuse_buf()
        buf.size = initRequest.count
        let copy = UnsafeMutableRawPointer.allocate(byteCount: max(initRequest.count, 1), alignment: 8)
        defer { copy.deallocate() }
        initRequest.withUnsafeBytes { copy.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        buf.mem = copy
        fuse_session_process_buf(session, &buf)
        swallowReplies = false
        guard negotiated != nil else {
            fuse_session_destroy(session)
            throw Failure(description: "the saved INIT request was not accepted")
        }
        agree(Negotiated(initRequest: initRequest, writebackCache: writebackCache))
        self.session = session
        self.fd = fd
        startFlusher()
    }

    /// Why the flusher could not start, if it could not: checks then go by
    /// what the kernel writes back on its own, and what a module changes by
    /// itself reaches the kernel only when its cache expires.
    public private(set) var flusherFailure: String?

    private func startFlusher() {
        let child = UnsafeMutablePointer<bento_flusher>.allocate(capacity: 1)
        let rc = bento_flusher_start(child, fd)
        guard rc == 0 else {
            child.deallocate()
            flusherFailure = String(cString: strerror(-rc))
            return
        }
        flusher = child
    }

    private func agree(_ negotiated: Negotiated) {
        kernelAppends.store(negotiated.writebackCache, ordering: .releasing)
        agreed.withLock { $0 = negotiated }
    }

    /// Open flags as the module sees them. With the writeback cache the
    /// kernel owns O_APPEND: it puts each append at its own end of file
    /// and later writes whole cached pages back at their offsets. A module
    /// that honored O_APPEND would put those pages after the end again, so
    /// modules never see it then (Docs/module-sdk.md, "Writes").
    func moduleOpenFlags(_ fi: UnsafeMutablePointer<fuse_file_info>?) -> Int32 {
        let flags = fi?.pointee.flags ?? 0
        return kernelAppends.load(ordering: .acquiring) ? flags & ~O_APPEND : flags
    }

    /// Whether the handle opened with `fi` writes past the kernel's page
    /// cache (DirectWrites): opened write-only, without the writeback cache.
    func writesPastPageCache(_ fi: UnsafeMutablePointer<fuse_file_info>?) -> Bool {
        writeOnlyHandlesWritePastPageCache && (fi?.pointee.flags ?? 0) & O_ACCMODE == O_WRONLY
    }

    /// Whether write-only handles write past the kernel's page cache on
    /// this mount (for status).
    public var writeOnlyHandlesWritePastPageCache: Bool {
        DirectWrites.kernelDropsOverwrittenPages && !kernelAppends.load(ordering: .acquiring)
    }

    /// Asks the kernel to deliver again every request a dead process read
    /// and never answered (FUSE_NOTIFY_RESEND: a bare notification header).
    public func requestResend() throws(Failure) {
        var header: (UInt32, Int32, UInt64) = (16, Self.notifyResend, 0)
        let written = withUnsafeBytes(of: &header) { Glibc.write(fd, $0.baseAddress, 16) }
        guard written == 16 else {
            throw Failure(description: "FUSE_NOTIFY_RESEND: \(String(cString: strerror(errno))) (kernel before FUSE 7.40?)")
        }
    }

    /// FUSE_NOTIFY_RESEND (protocol 7.40; Debian's fuse.h stops at 7.38).
    static let notifyResend: Int32 = 7
    /// FUSE_NOTIFY_INC_EPOCH (protocol 7.44).
    static let notifyIncEpoch: Int32 = 8

    // MARK: What the kernel caches

    /// Has the kernel drop every name it cached, negative ones too: each is
    /// looked up again at its next use (FUSE_NOTIFY_INC_EPOCH, a bare
    /// notification header: one write, however many names). False when
    /// the kernel predates it; its names then expire within `timeout`.
    @discardableResult
    public func forgetCachedNames() -> Bool {
        guard cachesNames else { return false }
        var header: (UInt32, Int32, UInt64) = (16, Self.notifyIncEpoch, 0)
        return withUnsafeBytes(of: &header) { Glibc.write(fd, $0.baseAddress, 16) } == 16
    }

    /// Has the kernel drop the attributes it cached of each inode; it asks
    /// again at their next use. An inode the kernel no longer holds is
    /// skipped (the kernel answers ENOENT).
    public func forgetCachedAttributes<S: Sequence>(of inodes: S) where S.Element == InodeNumber {
        guard let session else { return }
        for ino in inodes { _ = fuse_lowlevel_notify_inval_inode(session, ino, -1, 0) }
    }

    /// Passes on what a module reported it changed by itself, through the
    /// flusher child: the kernel may hold a directory's lock, or a page's,
    /// until a request is answered, and a thread of this process waiting
    /// there would keep it from ever exiting.
    public func forgetCached(_ change: KernelCache.Change) {
        guard let flusher else { return }
        var note = [UInt8]()
        func append<T>(_ value: T) { withUnsafeBytes(of: value) { note.append(contentsOf: $0) } }
        switch change {
        case .inode(let ino):
            // FUSE_NOTIFY_INVAL_INODE: attributes and every cached page.
            append(UInt32(40)); append(Int32(2)); append(UInt64(0))
            append(ino); append(Int64(0)); append(Int64(0))
        case .entry(let parent, let name):
            // FUSE_NOTIFY_INVAL_ENTRY: parent, name length, flags, the name.
            guard name.count <= 255 else { return }
            append(UInt32(16 + 16 + name.count + 1)); append(Int32(3)); append(UInt64(0))
            append(parent); append(UInt32(name.count)); append(UInt32(0))
            note += name + [0]
        }
        _ = note.withUnsafeBytes { bento_flusher_notify(flusher, $0.baseAddress, $0.count) }
    }

    private func makeSession(fd: Int32) throws(Failure) -> OpaquePointer {
        var ops = Self.operations()
        let name = strdup("bento-upgraded")
        var argv: [UnsafeMutablePointer<CChar>?] = [name, nil]
        let created = argv.withUnsafeMutableBufferPointer { buffer -> OpaquePointer? in
            var args = fuse_args(argc: 1, argv: buffer.baseAddress, allocated: 0)
            return fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size,
                                    Unmanaged.passUnretained(self).toOpaque())
        }
        free(name)
        guard let session = created else { throw Failure(description: "fuse_session_new failed") }
        // fuse_session_destroy closes the session's fd: give it a duplicate
        // of its own, so that `fd` stays the caller's to keep or close.
        let sessionFD = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard sessionFD >= 0 else {
            fuse_session_destroy(session)
            throw Failure(description: "dup of /dev/fuse fd \(fd): \(String(cString: strerror(errno)))")
        }
        guard fuse_session_custom_io(session, Self.customIO, sessionFD) == 0 else {
            fuse_session_destroy(session)
            close(sessionFD)  // refused: the session did not take it
            throw Failure(description: "fuse_session_custom_io failed")
        }
        guard fuse_session_mount(session, "/dev/fd/\(sessionFD)") == 0 else {
            fuse_session_destroy(session)
            throw Failure(description: "fuse_session_mount on /dev/fd/\(sessionFD) failed")
        }
        return session
    }

    /// Runs the multi-threaded request loop until the session ends (the
    /// file system is unmounted).
    public func run(maxThreads: Int) -> Int32 {
        guard let session else { return -1 }
        maxFlushes = max(1, maxThreads / 2)
        let config = fuse_loop_cfg_create()
        defer { fuse_loop_cfg_destroy(config) }
        fuse_loop_cfg_set_clone_fd(config, 0)
        fuse_loop_cfg_set_max_threads(config, UInt32(maxThreads))
        // No thread ever exits once started. With at most 4 idle ones, a
        // busy mount started and ended threads all the time, each with a
        // 1 MiB request buffer and a reply buffer, and glibc kept what they
        // freed: the worker grew by some 4 MiB a second under a 4-thread
        // load, to 577 MiB in 2 minutes (Tests/mount/memory.sh now checks).
        fuse_loop_cfg_set_idle_threads(config, UInt32(maxThreads))
        return fuse_session_loop_mt(session, config)
    }

    /// Once `run` has returned, on the same thread: the loop ends when the
    /// mount goes away (unmounted), never from another thread.
    public func destroySession() {
        if let session { fuse_session_destroy(session) }
        session = nil
    }

    // MARK: Request plumbing

    static func server(_ req: fuse_req_t?) -> FuseServer {
        Unmanaged<FuseServer>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    /// Runs `body` for one request of `operation` inside the gate; `body`
    /// sends the reply as its last step, and a thrown error is the reply
    /// instead.
    @inline(__always)
    func handle(_ req: fuse_req_t?, _ operation: Operation, _ body: (any FileSystem, RequestContext) throws -> Void) {
        let start = RequestStats.nanoseconds()
        gate.enter()
        defer {
            gate.leave()
            bento_recorder_idle()
            stats.record(operation.rawValue, nanoseconds: RequestStats.nanoseconds() &- start)
        }
        do {
            try body(fileSystem, Convert.context(req))
        } catch {
            let code = (error as? Errno)?.rawValue ?? EIO
            stats.countError(operation.rawValue, code)
            if let condition = PressureLog.failedRequests(code) { pressure.note(condition, detail: "\(operation)") }
            fuse_reply_err(req, code)
        }
    }

    func replyEntry(_ req: fuse_req_t?, _ entry: Entry) {
        var p = Convert.entry(entry, timeout: timeout, attributeTimeout: attributeTimeout(entry.ino))
        fuse_reply_entry(req, &p)
    }

    func replyOpen(_ req: fuse_req_t?, _ fi: UnsafeMutablePointer<fuse_file_info>?, _ open: OpenReply) {
        fill(fi, open)
        fuse_reply_open(req, fi)
    }

    /// The handle an OPEN or CREATE answers with: the module's, how the
    /// kernel caches it, and whether it writes past the page cache.
    func fill(_ fi: UnsafeMutablePointer<fuse_file_info>?, _ open: OpenReply) {
        fi?.pointee.fh = open.handle
        fi?.pointee.keep_cache = open.keepCache ? 1 : 0
        fi?.pointee.direct_io = writesPastPageCache(fi) ? 1 : 0
    }

    /// Notes the kernel's INIT request (opcode 26) as it is read; the same
    /// thread then answers it in `negotiate`.
    func noteRead(_ buffer: UnsafeRawPointer, _ count: Int) {
        guard count >= 40, buffer.loadUnaligned(fromByteOffset: 4, as: UInt32.self) == 26 else { return }
        pendingInit = Array(UnsafeRawBufferPointer(start: buffer, count: count))
        initUnique.store(buffer.loadUnaligned(fromByteOffset: 8, as: UInt64.self), ordering: .releasing)
    }

    /// The reply to the kernel's INIT, amended (KillSetID); nil for any
    /// other reply, which goes out as it is.
    func amendedInitReply(_ iov: UnsafePointer<iovec>, _ count: Int) -> [UInt8]? {
        let unique = initUnique.load(ordering: .acquiring)
        guard unique != 0, count >= 1, iov[0].iov_len >= 16,
              iov[0].iov_base.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == unique,
              let request = pendingInit else { return nil }
        initUnique.store(0, ordering: .releasing)
        let reply = (0..<count).flatMap { Array(UnsafeRawBufferPointer(start: iov[$0].iov_base, count: iov[$0].iov_len)) }
        return KillSetID.granted(reply, request: request)
    }

    /// A request in the quarantine is answered EIO here, never reaching
    /// libfuse or the module; true if it was.
    func answerIfQuarantined(_ buffer: UnsafeRawPointer, _ count: Int) -> Bool {
        guard !quarantine.isEmpty, count >= 16 else { return false }
        let unique = buffer.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        guard quarantine.contains(unique & ~Resend.flag) else { return false }
        var header: (UInt32, Int32, UInt64) = (16, -EIO, unique)
        _ = withUnsafeBytes(of: &header) { Glibc.write(fd, $0.baseAddress, 16) }
        pressure.note(PressureLog.quarantined, detail: "request \(unique & ~Resend.flag)")
        return true
    }

    /// What a fast FUSE file system asks for at INIT.
    func negotiate(_ conn: UnsafeMutablePointer<fuse_conn_info>) {
        defer {
            agree(Negotiated(initRequest: pendingInit ?? [],
                             writebackCache: conn.pointee.want & UInt32(FUSE_CAP_WRITEBACK_CACHE) != 0))
        }
        let wanted: UInt32 = UInt32(FUSE_CAP_ASYNC_READ) | (writebackCache ? UInt32(FUSE_CAP_WRITEBACK_CACHE) : 0)
            | UInt32(FUSE_CAP_PARALLEL_DIROPS) | UInt32(FUSE_CAP_READDIRPLUS) | UInt32(FUSE_CAP_ATOMIC_O_TRUNC)
            | UInt32(FUSE_CAP_EXPORT_SUPPORT) | UInt32(FUSE_CAP_SPLICE_READ) | UInt32(FUSE_CAP_SPLICE_MOVE)
            | (posixACL ? UInt32(FUSE_CAP_POSIX_ACL) : 0)
        conn.pointee.want |= wanted & conn.pointee.capable
        // The module is the only writer: the kernel need not check its cache
        // against every attribute reply (which, with the uncacheable
        // attributes of a nearly full disk, would ask before every read).
        conn.pointee.want &= ~UInt32(FUSE_CAP_AUTO_INVAL_DATA)
        kernelDropsNames.store(conn.pointee.proto_minor >= Self.epochMinor, ordering: .relaxed)
        if !writebackCache { conn.pointee.want &= ~UInt32(FUSE_CAP_WRITEBACK_CACHE) }
        conn.pointee.max_write = 1 << 20
        conn.pointee.max_readahead = 1 << 20
        conn.pointee.time_gran = 1
    }

    // The custom I/O: plain read and writev on our fd, with INIT and
    // resent requests noted.
    nonisolated(unsafe) static let customIO: UnsafeMutablePointer<fuse_custom_io> = {
        let io = UnsafeMutablePointer<fuse_custom_io>.allocate(capacity: 1)
        io.initialize(to: fuse_custom_io())
        io.pointee.read = { fd, buffer, length, userdata in
            // libfuse cancels the loop's threads when the session ends, some
            // of them inside read: ThreadSanitizer reports every such thread
            // and kills the process. Unmounting wakes every read with ENODEV,
            // after which each thread leaves the loop by itself.
            pthread_setcancelstate(Int32(PTHREAD_CANCEL_DISABLE), nil)
            if let buffer { ReadBuffer.prefault(buffer, length) }
            let server = userdata.map { Unmanaged<FuseServer>.fromOpaque($0).takeUnretainedValue() }
            while true {
                bento_recorder_idle()
                if let server, !server.deferredForgets.isEmpty, !DeferredForgets.lastReadWasForget {
                    // This thread has just answered a request: its caller
                    // is waking up, and the daemon has time until then.
                    server.runDeferredForgets(while: { !RequestWaiter.pending(fd) })
                }
                let n = server.map { server in
                    server.waiter.read(fd, buffer, length, beforeSleeping: { server.runDeferredForgets() })
                } ?? Glibc.read(fd, buffer, length)
                let saved = errno
                if n > 0, let buffer, let server {
                    // Before the recorder notes the request: a fault in a
                    // FORGET is not this request's.
                    server.runDeferredForgets(before: buffer, n)
                    bento_recorder_note(buffer, n)
                    if server.answerIfQuarantined(buffer, n) { continue }
                    server.noteRead(buffer, n)
                    server.forgets.noteRead(buffer, n)
                    Resend.noteRead(buffer, n)
                    KillSetID.noteRead(buffer, n)
                }
                errno = saved
                return n
            }
        }
        io.pointee.writev = { fd, iov, count, userdata in
            if let userdata, Unmanaged<FuseServer>.fromOpaque(userdata).takeUnretainedValue().swallowReplies {
                return (0..<Int(count)).reduce(0) { $0 + (iov?[$1].iov_len ?? 0) }
            }
            if let userdata, let iov,
               let reply = Unmanaged<FuseServer>.fromOpaque(userdata).takeUnretainedValue().amendedInitReply(iov, Int(count)) {
                return reply.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            }
            return Glibc.writev(fd, iov, count)
        }
        return io
    }()
}
