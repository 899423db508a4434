import ArgumentParser
import BentoConfig
import BentoControl
import BentoDaemon
import BentoHost
import BentoSystemd
import BentoVersion
import BentoWorker
import Glibc
import Logging

/// bento-upgraded: serves file system modules over real FUSE mounts.
struct BentoUpgraded: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bento-upgraded",
        abstract: "Serve Bento file system modules through FUSE.",
        discussion: "Serves the mounts in the config file, or the one mount given with --image, --mountpoint and --module.",
        version: bentoVersion)

    @Option(help: "The config file.") var config = BentoConfiguration.defaultPath
    @Option(help: "The control socket bentoctl talks to (default: the config's, else \(ControlProtocol.defaultSocketPath)).")
    var controlSocket: String?
    @Option(help: "Where upgrade history and state are kept (default: the config's, else /var/lib/bento).")
    var stateDir: String?
    @Option(help: "How long an upgrade waits for in-flight requests, in milliseconds.")
    var quiesceTimeoutMs = 1000
    @Option(help: "The image file or block device of a single mount (instead of the config file).") var image: String?
    @Option(help: "Where to mount it.") var mountpoint: String?
    @Option(help: "The module file (xv6fs-<version>.so); given more than once, a stack, top first (layers over a file system).")
    var module: [String] = []
    @Option(help: "Most request threads per mount (default: 8; 16 with --writeback-cache).") var threads: Int?
    @Option(help: "How long the thread waiting for requests polls for the next one before it sleeps, in microseconds (0: never).")
    var pollUs = MountSettings.defaultPollMicroseconds
    @Option(help: "Buffer cache size per mount, in MiB.") var cacheMib = MountConfiguration.defaultCacheMiB
    @Flag(help: "Let users other than root use the mount.") var allowOther = false
    @Flag(help: "Serve the image read-only: opened read-only (it may sit on read-only storage), mounted read-only, nothing written.")
    var readOnly = false
    @Flag(inversion: .prefixedNo, help: "Let the kernel cache writes (FUSE writeback cache): small writes get faster; an unlink, and a stat of a file closed without a read or a write, cost a request more.")
    var writebackCache = false
    @Flag(inversion: .prefixedNo, help: "Make write() fail with ENOSPC on a full disk, with the writeback cache (off only to measure its cost).")
    var writeSpaceCheck = true
    @Option(help: "Seconds after an upgrade in which a fault or hang of the new version rolls back.")
    var probationSeconds = MountConfiguration.defaultProbationSeconds
    @Option(help: "Seconds a request may run before it is treated as a fault.")
    var hangLimitSeconds = MountConfiguration.defaultHangLimitSeconds
    /// Run as one mount's worker process (started by the daemon itself).
    @Flag(help: .hidden) var worker = false

    func validate() throws {
        let given = [image, mountpoint, module.first].compactMap { $0 }.count
        if given != 0 && given != 3 {
            throw ValidationError("--image, --mountpoint and --module go together")
        }
    }

    func run() throws {
        let journal = JournalLogHandler.journalIsThere
        LoggingSystem.bootstrap { label -> any LogHandler in
            journal ? JournalLogHandler(label: label) : StreamLogHandler.standardError(label: label)
        }
        let log = Logger(label: "bento-upgraded")
        if worker { Worker.run(log: log) }
        do {
            let (_, fromConfig) = try mountSettings()
            let options = Supervisor.Options(
                controlSocket: controlSocket ?? fromConfig?.controlSocket ?? ControlProtocol.defaultSocketPath,
                stateDirectory: stateDir ?? fromConfig?.stateDirectory ?? "/var/lib/bento",
                quiesceTimeout: Double(quiesceTimeoutMs) / 1000,
                exitWhenUnmounted: fromConfig == nil)
            // Read again on each reload.
            try Supervisor(log: log, options: options) { try mountSettings().0 }.run()
        } catch {
            log.critical("\(error)")
            throw ExitCode(1)
        }
    }

    /// The mounts to serve: the one on the command line, or the config
    /// file's, checked whole before anything is mounted.
    func mountSettings() throws -> ([MountSettings], BentoConfiguration?) {
        if let image, let mountpoint, !module.isEmpty {
            let threads = threads ?? MountConfiguration.defaultThreads(writebackCache: writebackCache)
            guard MountConfiguration.threadsRange.contains(threads) else { throw ValidationError("--threads: 1 to 256") }
            guard MountConfiguration.cacheMiBRange.contains(cacheMib) else { throw ValidationError("--cache-mib: 1 to 65536") }
            guard MountConfiguration.pollRange.contains(pollUs) else { throw ValidationError("--poll-us: 0 to 1000") }
            var mount = MountSettings(image: image, mountpoint: mountpoint, module: ModuleStack.spec(of: module), threads: threads,
                                      cacheMiB: cacheMib, allowOther: allowOther, writebackCache: writebackCache,
                                      probationSeconds: Double(probationSeconds), hangLimitSeconds: Double(hangLimitSeconds),
                                      readOnly: readOnly)
            mount.writeSpaceCheck = writeSpaceCheck
            mount.pollMicroseconds = pollUs
            return ([mount], nil)
        }
        let file = try BentoConfiguration.load(path: config)
        return (file.mounts.map {
            var mount = MountSettings(image: $0.image, mountpoint: $0.mountpoint, module: $0.module, threads: $0.threads,
                                      cacheMiB: $0.cacheMiB, allowOther: $0.allowOther, writebackCache: $0.writebackCache,
                                      probationSeconds: Double($0.probationSeconds), hangLimitSeconds: Double($0.hangLimitSeconds),
                                      readOnly: $0.readOnly)
            mount.healthMaxFaultRateIncrease = Double($0.healthMaxErrorIncreasePercent) / 100
            mount.healthMaxP99Factor = Double($0.healthMaxP99Factor)
            if let poll = $0.pollMicroseconds { mount.pollMicroseconds = poll }
            return mount
        }, file)
    }
}

BentoUpgraded.main()
