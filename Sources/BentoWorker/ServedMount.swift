@_spi(Host) import BentoKit
import BentoControl
import BentoFUSE
import BentoHost
import BentoServices
import Glibc
import Logging

/// One mount as its worker process serves it: the image, the module
/// instances on it (a stack of one, or layers over a file system), and the
/// FUSE session with its request loop. Every descriptor comes from the
/// supervisor (WorkerFD).
final class ServedMount: @unchecked Sendable {
    let settings: MountSettings
    /// The modules serving now; changed only by an upgrade, read by status
    /// requests on another thread.
    var stack: ModuleStack {
        get { current.withLock { $0 } }
        set { current.withLock { $0 = newValue } }
    }
    private let current: Guarded<ModuleStack>
    /// Their instances: used by upgrades and hand-overs alone, one at a
    /// time (`upgrading`).
    let served: ServedStack
    let server: FuseServer
    /// The host's services under the module: they outlive each instance.
    let superBlock: SuperBlock
    /// Each answered operation's blocks, in the supervisor's memfd.
    let journal: SharedMemoryJournal
    /// The buffer cache behind `superBlock`, for its figures.
    let bufferCache: LRUBufferCache
    /// Failures that recur per request (the server's and the module's
    /// reports), logged once per condition and interval.
    let pressure: PressureLog
    /// Held for the length of an upgrade: one at a time.
    let upgrading = PthreadMutex()
    let origin: WorkerStart.Origin
    let log: Logger
    /// Set by an import of the state a restarted daemon saved.
    private(set) var importedStateBytes: Int?

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Loads the module, opens the image on the device fd, adopts the
    /// journal, and mounts the module: restored from the saved state, or
    /// recovered from the disk. Throws a message naming what went wrong.
    init(_ start: WorkerStart, log: Logger) throws {
        var log = log
        log[metadataKey: "mount"] = "\(start.settings.mountpoint)"
        self.log = log
        settings = start.settings
        origin = start.origin
        let modules: ModuleStack
        do { modules = try ModuleStack.load(spec: settings.module) } catch { throw Failure("\(error)") }
        current = Guarded(modules)
        let device: FileBlockDevice
        do { device = try FileBlockDevice(fd: WorkerFD.image, path: settings.image, direct: true) } catch { throw Failure("\(error)") }
        let cache = LRUBufferCache(device: device, capacity: settings.cacheMiB * 256)
        bufferCache = cache
        do { journal = try SharedMemoryJournal(adopting: WorkerFD.journal, cache: cache) } catch {
            // Serve anyway, with a journal of this worker's own: what the
            // unusable one held is lost, and so is what this one holds if
            // this worker dies.
            log.error("the operation journal is unusable (\(error)): operations answered since the last commit are lost")
            do { journal = try SharedMemoryJournal(cache: cache) } catch { throw Failure("\(error)") }
        }
        let adopted = start.origin != .mounted
        let pressure = Self.pressureLog(log: log)
        self.pressure = pressure
        // What the module reports goes to the pressure log; an error other
        // than an Errno counts as EIO and is named in the first entry.
        superBlock = SuperBlock(cache: cache, journal: journal, kernelMayHoldInodes: adopted,
                                readOnly: settings.readOnly, log: { [log] in log.info("\($0)") },
                                report: { condition, error, detail in
            let errno = (error as? Errno)?.rawValue ?? EIO
            pressure.note(PressureLog.Condition(condition, errno),
                          detail: ([error is Errno ? "" : "\(error)", detail()].filter { !$0.isEmpty }).joined(separator: ": "))
        })
        var served: ServedStack?
        if start.origin == .restarted, let (state, references) = Self.savedState() {
            do {
                if let references { superBlock.references.replace(with: references) }
                served = try ServedStack.restore(modules, superBlock: superBlock, from: state)
                importedStateBytes = state.bytes.count
            } catch {
                superBlock.references.replace(with: .init())
                log.warning("the state the previous process saved (\(state.format)) could not be imported: \(error); recovering from the disk instead")
            }
        }
        do {
            if served == nil { served = try ServedStack.mount(modules, superBlock: superBlock) }
        } catch {
            let errno = error as? Errno
            throw Failure("\(settings.image): \(modules.name) cannot mount it: "
                          + "\(errno.map { "\($0)" } ?? "\(error)")" + (errno == .EUCLEAN ? " (run fsck)" : ""))
        }
        self.served = served!
        // An adopted session keeps what the kernel agreed at its first INIT.
        let cachesWrites = adopted ? start.writebackCache ?? true : settings.writebackCache
        server = FuseServer(fileSystem: served!.top, writebackCache: settings.writebackCache,
                            posixACL: modules.bottom.module!.posixACL,
                            space: cachesWrites && settings.writeSpaceCheck ? Self.spaceGuard(settings, log: log) : nil,
                            pressure: pressure, pollMicroseconds: settings.pollMicroseconds)
        server.quarantine = Set(start.quarantine)
        if adopted {
            guard let initRequest = start.initRequest else { throw Failure("no saved INIT request to adopt the session with") }
            // A record without the flag comes from a daemon that did not
            // keep it: stripping O_APPEND is right whatever the kernel caches.
            try server.adopt(fd: WorkerFD.fuse, initRequest: initRequest, writebackCache: start.writebackCache ?? true)
        } else {
            try server.attach(fd: WorkerFD.fuse)
        }
        if let why = server.flusherFailure {
            log.warning("\(settings.mountpoint): no flusher process (\(why)): near a full disk, writes are refused while some room remains, and the kernel sees what the module changes by itself only once its cache expires")
        }
    }

    /// For a mount whose worker died as it was unmounted: the module
    /// recovers the image from the disk and the operation journal, which
    /// holds every operation answered, and commits it all.
    static func flush(_ start: WorkerStart, log: Logger) throws {
        let modules: ModuleStack
        do { modules = try ModuleStack.load(spec: start.settings.module) } catch { throw Failure("\(error)") }
        let device: FileBlockDevice
        do { device = try FileBlockDevice(fd: WorkerFD.image, path: start.settings.image, direct: true) } catch {
            throw Failure("\(error)")
        }
        let cache = LRUBufferCache(device: device, capacity: start.settings.cacheMiB * 256)
        let journal: SharedMemoryJournal
        do { journal = try SharedMemoryJournal(adopting: WorkerFD.journal, cache: cache) } catch { throw Failure("\(error)") }
        let superBlock = SuperBlock(cache: cache, journal: journal, kernelMayHoldInodes: false,
                                    readOnly: start.settings.readOnly) { log.info("\($0)") }
        try ServedStack.mount(modules, superBlock: superBlock).top.destroy()
        log.info("\(start.settings.mountpoint): recovered and flushed after its worker died while unmounting")
    }

    /// The reserve: what the kernel may hold dirty for this mount, with a
    /// quarter more (writers overshoot the limit before the kernel throttles
    /// them: 58 MiB dirty was seen against a 48 MiB limit, 8 writers), and
    /// room for the metadata blocks (indirect tables, directories) it needs.
    private static func spaceGuard(_ settings: MountSettings, log: Logger) -> SpaceGuard {
        let dirty = DirtyLimit.bytes(mountpoint: settings.mountpoint)
        let reserve = dirty + dirty / 4 + (8 << 20)
        log.info("\(settings.mountpoint): writes are checked one by one below \(reserve >> 20) MiB free (the kernel may hold \(dirty >> 20) MiB dirty)")
        return SpaceGuard(reserve: reserve)
    }

    /// The mount's pressure log, writing journal entries with their
    /// MESSAGE_IDs; its interval is BENTO_PRESSURE_INTERVAL's, if set.
    private static func pressureLog(log: Logger) -> PressureLog {
        let interval = PressureLog.intervalFromEnvironment()
        if interval == nil {
            log.warning("BENTO_PRESSURE_INTERVAL is not a positive number of seconds: using \(Int(PressureLog.defaultInterval)) s")
        }
        return PressureLog(interval: interval ?? PressureLog.defaultInterval, write: { [log] entry in
            let fields = ["condition": "\(entry.condition.what)", "error": entry.condition.error, "count": "\(entry.count)",
                          "total": "\(entry.total)", "seconds": "\(Int(entry.seconds.rounded()))"]
            switch entry.kind {
            case .began: log.event(.pressureBegan, level: .warning, "\(entry)", fields)
            case .summary: log.event(.pressureSummary, level: .warning, "\(entry)", fields)
            case .cleared: log.event(.pressureCleared, level: .notice, "\(entry)", fields)
            }
        })
    }

    /// The state in WorkerFD.stateIn, if the supervisor passed one.
    private static func savedState() -> (ExportedState, KernelReferences.Snapshot?)? {
        guard let bytes = try? MemoryFile.contents(of: WorkerFD.stateIn) else { return nil }
        return try? SavedState.decode(bytes)
    }

    /// Logs how the mount came to be served; an adopted session first has
    /// the kernel resend what the dead process read.
    func announce() {
        let stack = stack, module = stack.name
        var fields = ["module": stack.spec, "image": settings.image, "version": "\(stack.top.descriptor.version)"]
        switch origin {
        case .mounted:
            log.event(.mountServing, "serving \(settings.image) at \(settings.mountpoint) with \(module)", fields)
        case .restarted where importedStateBytes != nil:
            fields["state_bytes"] = "\(importedStateBytes!)"
            log.event(.adopted, "took \(settings.mountpoint) over after a restart: \(module) imported \(importedStateBytes!) bytes of state", fields)
        case .restarted, .recovered, .flush:
            log.event(.recovered, "took \(settings.mountpoint) over after the previous process died: \(module) recovered it from the disk", fields)
        }
        if origin != .mounted {
            // The kernel cached what the old process answered, maybe from
            // another version: names go now, attributes once requests flow
            // again (one notification per inode the kernel holds).
            server.forgetCachedNames()
            do { try server.requestResend() } catch { log.error("\(error): requests the old process read may hang") }
            let held = superBlock.references.heldInodes
            Thread.start { [server] in server.forgetCachedAttributes(of: held) }
        }
    }

    /// Passes what the module reports it changed by itself on to the
    /// kernel, for the life of the process (a thread of its own: see
    /// `FuseServer.forgetCached`).
    func passOnModuleChanges() {
        while true {
            for change in superBlock.kernelCache.waitForChanges() { server.forgetCached(change) }
        }
    }

    /// Writes the pressure log's summaries and all-clears as they come
    /// due, for the life of the process.
    func summarizePressure() {
        let pause = UInt32(pressure.tickInterval * 1e6)
        while true {
            usleep(pause)
            pressure.tick()
        }
    }

    /// Runs the request loop until the mount goes away, then flushes.
    func serve() {
        _ = server.run(maxThreads: settings.threads)
        server.gate.pass {
            server.runKeptForgets(on: server.fileSystem)
            do { try server.fileSystem.destroy() } catch { log.error("flushing on unmount failed: \(error)") }
        }
        server.destroySession()
        pressure.flush()
        log.event(.mountStopped, "unmounted \(settings.mountpoint)", ["image": settings.image])
    }

    /// A commit every few seconds, so that an idle file system does not
    /// keep changes only in memory; a failure is logged, once per error.
    func syncPeriodically() {
        var lastError: String?
        while true {
            sleep(5)
            server.gate.pass {
                do {
                    try server.fileSystem.sync()
                    lastError = nil
                } catch {
                    let text = "\(error)"
                    if text != lastError { log.error("periodic commit failed: \(text)") }
                    lastError = text
                }
            }
        }
    }

    /// What `bentoctl status` shows of this mount.
    var status: MountStatus {
        let latency = server.stats.latencyMicros
        let stack = stack
        func info(_ module: LoadedModule) -> ModuleInfo {
            ModuleInfo(name: module.descriptor.fileSystem, version: "\(module.descriptor.version)", path: module.path)
        }
        var status = MountStatus(mountpoint: settings.mountpoint, image: settings.image, module: info(stack.bottom),
                                 state: .serving, uptimeSeconds: server.stats.uptimeSeconds,
                                 operations: server.stats.operationCounts, resentRetries: server.stats.resendRetries,
                                 latencyMicros: LatencySummary(p50: latency.p50, p90: latency.p90, p99: latency.p99, max: latency.max),
                                 readOnly: settings.readOnly ? true : nil)
        status.layers = stack.modules.count > 1 ? stack.modules.dropLast().map(info) : nil
        status.inFlight = server.gate.count
        let held = superBlock.references.size
        status.heldInodes = UInt64(held.inodes)
        status.heldHandles = UInt64(held.handles)
        if let negotiated = server.negotiated {
            status.kernelCacheSeconds = server.timeout
            status.kernelCachesWrites = negotiated.writebackCache
            status.writeOnlyPastPageCache = server.writeOnlyHandlesWritePastPageCache
        }
        let blockSize = UInt64(bufferCache.blockSize), (cached, dirty) = bufferCache.counts
        status.cache = CacheStatus(capacityBytes: UInt64(bufferCache.capacity) * blockSize,
                                   allocatedBytes: UInt64(bufferCache.allocatedBlocks) * blockSize,
                                   cachedBytes: UInt64(cached) * blockSize, dirtyBytes: UInt64(dirty) * blockSize,
                                   hits: bufferCache.hits, misses: bufferCache.misses)
        (status.residentBytes, status.peakResidentBytes) = Self.residentMemory()
        let counts = pressure.counts.map {
            PressureCount(condition: "\($0.condition.what)", error: $0.condition.error, count: $0.total,
                          lastSecondsAgo: $0.lastSecondsAgo, ongoing: $0.active)
        }
        status.pressure = counts.isEmpty ? nil : counts
        return status
    }

    /// This process's resident memory now and at its peak (VmRSS, VmHWM).
    private static func residentMemory() -> (UInt64?, UInt64?) {
        guard let text = ProcFile.text(at: "/proc/self/status") else { return (nil, nil) }
        func kib(_ field: String) -> UInt64? {
            text.split(separator: "\n").first { $0.hasPrefix(field + ":") }
                .flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { UInt64($0) } }
                .map { $0 * 1024 }
        }
        return (kib("VmRSS"), kib("VmHWM"))
    }

    /// For a restart: stops answering, commits, and writes the exported
    /// state to WorkerFD.stateOut. Requests read meanwhile wait at the
    /// closed gate and are resent to the next process. Returns the state's
    /// size, or nil when the next process must recover from the disk.
    func handOver(quiesceTimeout: Double) -> Int? {
        upgrading.withLock {
            guard server.gate.close(timeoutNanoseconds: UInt64(quiesceTimeout * 1e9)) else {
                log.warning("requests still running after \(Int(quiesceTimeout * 1000)) ms: the next process recovers from the disk")
                return nil
            }
            do {
                // The next process would never see these FORGETs again.
                server.runKeptForgets(on: server.fileSystem)
                try server.fileSystem.sync()
                // The next process reads the image through a cache of its
                // own: the commit's home writes must have landed, and this
                // process may be killed as soon as it answers.
                bufferCache.waitForWriteBacks()
                guard let state = try served.exportState() else { return nil }
                try MemoryFile.write(SavedState.encode(state, references: superBlock.references.snapshot()), to: WorkerFD.stateOut)
                return state.bytes.count
            } catch {
                log.warning("state not exported (\(error)): the next process recovers from the disk")
                return nil
            }
        }
    }
}

/// Exported state as it waits in a memfd for the next process: format
/// name, format version, bytes; then the host's table of what the kernel
/// holds (lookup counts, open handles), which no module state carries.
public enum SavedState {
    public static func encode(_ state: ExportedState, references: KernelReferences.Snapshot) -> [UInt8] {
        var record = StateWriter(capacity: state.bytes.count + 64 + 24 * references.counts.count + 40 * references.files.count)
        record.write(state.format.name)
        record.write(state.format.version)
        record.write(bytes: state.bytes)
        record.write(references.nextHandle)
        record.write(UInt64(references.counts.count))
        for (ino, counts) in references.counts {
            record.write(ino); record.write(counts.lookups); record.write(counts.opens)
        }
        record.write(UInt64(references.files.count))
        for (handle, file) in references.files {
            record.write(handle); record.write(file.ino); record.write(file.flags); record.write(file.isDirectory)
            record.write(file.opener.uid); record.write(file.opener.gid); record.write(file.opener.pid)
        }
        return record.bytes
    }

    /// The state, and the table (nil from a process that saved none).
    public static func decode(_ bytes: [UInt8]) throws -> (ExportedState, KernelReferences.Snapshot?) {
        var reader = StateReader(bytes)
        let format = StateFormat(name: try reader.readString(), version: try reader.read())
        let state = ExportedState(format: format, bytes: try reader.readBytes())
        guard !reader.isAtEnd else { return (state, nil) }
        var table = KernelReferences.Snapshot(nextHandle: try reader.read())
        let inodes = try reader.readCount(minimumSize: 24)
        table.counts.reserveCapacity(inodes)
        for _ in 0..<inodes {
            let ino: InodeNumber = try reader.read()
            table.counts[ino] = KernelReferences.Counts(lookups: try reader.read(), opens: try reader.read())
        }
        let handles = try reader.readCount(minimumSize: 33)
        table.files.reserveCapacity(handles)
        for _ in 0..<handles {
            let handle: FileHandle = try reader.read()
            table.files[handle] = KernelReferences.OpenFile(
                ino: try reader.read(), flags: try reader.read(), isDirectory: try reader.read(),
                opener: RequestContext(uid: try reader.read(), gid: try reader.read(), pid: try reader.read()))
        }
        guard reader.isAtEnd else { throw Errno.EINVAL }
        return (state, table)
    }
}

/// Whole-file reads and writes of memfds.
public enum MemoryFile {
    public static func contents(of fd: Int32) throws -> [UInt8] {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ServedMount.Failure("fstat: \(String(cString: strerror(errno)))") }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard read == bytes.count else { throw ServedMount.Failure("short read of a memfd") }
        return bytes
    }

    public static func write(_ bytes: [UInt8], to fd: Int32) throws {
        guard ftruncate(fd, 0) == 0 else { throw ServedMount.Failure("ftruncate: \(String(cString: strerror(errno)))") }
        let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        guard written == bytes.count else { throw ServedMount.Failure("short write to a memfd") }
    }
}
