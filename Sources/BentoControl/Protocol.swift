import FoundationEssentials

/// The control socket's protocol (Docs/control-protocol.md): one JSON object
/// per line, one request then one reply on the same connection, root only.
public enum ControlProtocol {
    /// Where bento-upgraded listens unless told otherwise (`--control-socket`).
    public static let defaultSocketPath = "/run/bento/control.sock"
    /// The longest request line the daemon reads, not counting the newline.
    public static let maxRequestBytes = 64 * 1024
}

/// A request line with the reason it cannot be served, worded for a person.
public struct ControlProtocolError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// `{"command": "status"}`, `{"command": "upgrade", "mountpoint": ..., "module": ...}`,
/// `{"command": "rollback", "mountpoint": ...}`, `{"command": "history"[, "mountpoint": ...]}`,
/// `{"command": "mount", "image": ..., "mountpoint": ..., "module": ...}`.
public struct ControlRequest: Codable, Equatable, Sendable {
    public enum Command: String, Codable, CaseIterable, Sendable {
        case status, upgrade, rollback, history, reload, mount
    }

    public var command: Command
    /// upgrade, rollback: the mount to act on; history: only this mount's entries.
    public var mountpoint: String?
    /// upgrade: the new module file (an absolute path; the daemon's working
    /// directory is not the caller's).
    public var module: String?
    /// upgrade: the probation, in seconds, instead of the mount's setting.
    public var probationSeconds: Double?
    /// upgrade: also a module file that failed on probation before.
    public var force: Bool?
    /// upgrade: answer once the probation has ended, with its verdict.
    public var wait: Bool?
    /// mount: the image file or block device to serve at `mountpoint`
    /// with `module` (what `mount -t xv6` asks for).
    public var image: String?
    /// mount: request threads and buffer cache; absent: the defaults.
    public var threads: Int?
    public var cacheMiB: Int?
    /// mount: let users other than root in.
    public var allowOther: Bool?
    /// mount: serve the image read-only (mount's `ro`).
    public var readOnly: Bool?
    /// mount: let the kernel cache writes (FUSE writeback cache).
    public var writebackCache: Bool?

    public init(command: Command, mountpoint: String? = nil, module: String? = nil, probationSeconds: Double? = nil,
                force: Bool? = nil, wait: Bool? = nil, image: String? = nil, threads: Int? = nil, cacheMiB: Int? = nil,
                allowOther: Bool? = nil, readOnly: Bool? = nil, writebackCache: Bool? = nil) {
        self.command = command
        self.mountpoint = mountpoint
        self.module = module
        self.probationSeconds = probationSeconds
        self.force = force
        self.wait = wait
        self.image = image
        self.threads = threads
        self.cacheMiB = cacheMiB
        self.allowOther = allowOther
        self.readOnly = readOnly
        self.writebackCache = writebackCache
    }

    public static let status = ControlRequest(command: .status)
    public static func upgrade(mountpoint: String, module: String, probationSeconds: Double? = nil, force: Bool = false,
                               wait: Bool = false) -> ControlRequest {
        ControlRequest(command: .upgrade, mountpoint: mountpoint, module: module, probationSeconds: probationSeconds,
                       force: force ? true : nil, wait: wait ? true : nil)
    }
    public static func rollback(mountpoint: String) -> ControlRequest {
        ControlRequest(command: .rollback, mountpoint: mountpoint)
    }
    public static func history(mountpoint: String? = nil) -> ControlRequest {
        ControlRequest(command: .history, mountpoint: mountpoint)
    }
    public static let reload = ControlRequest(command: .reload)
    public static func mount(image: String, mountpoint: String, module: String, threads: Int? = nil, cacheMiB: Int? = nil,
                             allowOther: Bool = false, readOnly: Bool = false, writebackCache: Bool = false) -> ControlRequest {
        ControlRequest(command: .mount, mountpoint: mountpoint, module: module, image: image, threads: threads,
                       cacheMiB: cacheMiB, allowOther: allowOther ? true : nil, readOnly: readOnly ? true : nil,
                       writebackCache: writebackCache ? true : nil)
    }

    private enum CodingKeys: String, CodingKey {
        case command, mountpoint, module, probationSeconds, force, wait, image, threads, cacheMiB, allowOther, readOnly,
             writebackCache
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard let name = try container.decodeIfPresent(String.self, forKey: .command) else {
            throw ControlProtocolError("malformed request: no \"command\" (try {\"command\": \"status\"})")
        }
        guard let command = Command(rawValue: name) else {
            let known = Command.allCases.map(\.rawValue).joined(separator: ", ")
            throw ControlProtocolError("unknown command \"\(name)\" (known: \(known))")
        }
        self.command = command
        mountpoint = try container.decodeIfPresent(String.self, forKey: .mountpoint)
        module = try container.decodeIfPresent(String.self, forKey: .module)
        probationSeconds = try container.decodeIfPresent(Double.self, forKey: .probationSeconds)
        force = try container.decodeIfPresent(Bool.self, forKey: .force)
        wait = try container.decodeIfPresent(Bool.self, forKey: .wait)
        image = try container.decodeIfPresent(String.self, forKey: .image)
        threads = try container.decodeIfPresent(Int.self, forKey: .threads)
        cacheMiB = try container.decodeIfPresent(Int.self, forKey: .cacheMiB)
        allowOther = try container.decodeIfPresent(Bool.self, forKey: .allowOther)
        readOnly = try container.decodeIfPresent(Bool.self, forKey: .readOnly)
        writebackCache = try container.decodeIfPresent(Bool.self, forKey: .writebackCache)
    }

    /// Decodes one request line (without its newline) and checks that the
    /// command has the fields it needs. Unknown fields are ignored.
    public static func decode(line: some Collection<UInt8>) throws(ControlProtocolError) -> ControlRequest {
        let request: ControlRequest
        do {
            request = try JSONDecoder().decode(ControlRequest.self, from: Data(line))
        } catch let error as ControlProtocolError {
            throw error
        } catch let error as DecodingError {
            throw ControlProtocolError("malformed request: \(describe(error))")
        } catch {
            throw ControlProtocolError("malformed request: \(error)")
        }
        func present(_ value: String?) -> Bool { !(value ?? "").isEmpty }
        switch request.command {
        case .status, .history, .reload:
            break
        case .upgrade:
            guard present(request.mountpoint), present(request.module) else {
                throw ControlProtocolError("upgrade needs \"mountpoint\" and \"module\"")
            }
        case .rollback:
            guard present(request.mountpoint) else {
                throw ControlProtocolError("rollback needs \"mountpoint\"")
            }
        case .mount:
            guard present(request.image), present(request.mountpoint), present(request.module) else {
                throw ControlProtocolError("mount needs \"image\", \"mountpoint\" and \"module\"")
            }
        }
        return request
    }

    private static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String {
            path.isEmpty ? "the request" : "\"" + path.map(\.stringValue).joined(separator: ".") + "\""
        }
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return "not valid JSON (send one JSON object per line, e.g. {\"command\": \"status\"})"
        case .dataCorrupted(let context):
            return "\(field(context.codingPath)) is not valid: \(context.debugDescription)"
        case .typeMismatch(let type, let context):
            if context.codingPath.isEmpty { return "expected a JSON object such as {\"command\": \"status\"}" }
            return "\(field(context.codingPath)) must be \(type == String.self ? "a string" : "\(type)")"
        case .valueNotFound(_, let context):
            return "\(field(context.codingPath)) must not be null"
        case .keyNotFound(let key, _):
            return "no \"\(key.stringValue)\""
        @unknown default:
            return "\(error)"
        }
    }
}

/// `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Each command's
/// payload is one key: status and mount `mounts`, upgrade and rollback
/// `upgrade`, history `history`. Absent fields are left out of the JSON.
public struct ControlReply: Codable, Equatable, Sendable {
    public var ok: Bool
    public var error: String?
    /// status
    public var mounts: [MountStatus]?
    /// upgrade, rollback (also when they did not succeed, if they got far enough to say why)
    public var upgrade: UpgradeReport?
    /// history, oldest first
    public var history: [UpgradeReport]?
    /// reload
    public var reload: ReloadReport?

    public init(ok: Bool, error: String? = nil, mounts: [MountStatus]? = nil,
                upgrade: UpgradeReport? = nil, history: [UpgradeReport]? = nil, reload: ReloadReport? = nil) {
        self.ok = ok
        self.error = error
        self.mounts = mounts
        self.upgrade = upgrade
        self.history = history
        self.reload = reload
    }

    public static func failure(_ message: String) -> ControlReply { ControlReply(ok: false, error: message) }
    public static func status(_ mounts: [MountStatus]) -> ControlReply { ControlReply(ok: true, mounts: mounts) }
}

/// What a reload of the config file changed, by mountpoint.
public struct ReloadReport: Codable, Equatable, Sendable {
    public var started: [String] = []
    public var stopped: [String] = []
    /// Mounts the new config leaves as they were: untouched.
    public var unchanged: [String] = []
    /// "mountpoint: why" for each new mount that could not start.
    public var failed: [String] = []
    public init() {}
}

/// The object `bentoctl status --json` prints: `{"mounts": [...]}`.
public struct StatusReport: Codable, Equatable, Sendable {
    public var mounts: [MountStatus]
    public init(mounts: [MountStatus]) { self.mounts = mounts }
}

/// One mount as the daemon serves it.
public struct MountStatus: Codable, Equatable, Sendable {
    public var mountpoint: String
    /// The image file or block device.
    public var image: String
    /// The file system module (of a stack: the one at the bottom).
    public var module: ModuleInfo
    /// The layers over it, top first (Docs/module-sdk.md, "Layers");
    /// absent for a mount of one module.
    public var layers: [ModuleInfo]?
    public var state: MountState
    public var uptimeSeconds: Double
    /// FUSE operation name ("lookup", "read", ...) to the number served since mount.
    public var operations: [String: UInt64]
    /// Over all operations since mount.
    public var latencyMicros: LatencySummary
    /// Resent requests (after a daemon crash) found already done and
    /// answered as such (Docs/systemd.md); absent when none.
    public var resentRetries: UInt64?
    /// Requests inside the module now (the watchdog's stall test).
    public var inFlight: Int?
    /// Set while the version serving is on probation after an upgrade.
    public var probation: ProbationStatus?
    /// Requests quarantined after they faulted or hung a worker.
    public var quarantined: Int?
    /// What the kernel holds: inodes it looked up or opened, open handles
    /// (the host's table, which upgrades and restarts leave in place).
    public var heldInodes: UInt64?
    public var heldHandles: UInt64?
    /// How long the kernel may cache names and attributes, in seconds:
    /// long on a kernel that can be told to drop them all at once
    /// (Docs/caching.md). Absent until the kernel's INIT is answered.
    public var kernelCacheSeconds: Double?
    /// Whether the kernel caches writes too (FUSE writeback cache), as its
    /// INIT agreed: a mount keeps that until it is mounted again. Absent
    /// until the kernel's INIT is answered.
    public var kernelCachesWrites: Bool?
    /// Whether handles opened write-only write past the kernel's page cache
    /// (Docs/caching.md, "Write-only handles"). Absent until the kernel's
    /// INIT is answered.
    public var writeOnlyPastPageCache: Bool?
    /// The host's buffer cache of the mount, in the worker.
    public var cache: CacheStatus?
    /// The worker process's resident memory now, and at its peak (bytes).
    public var residentBytes: UInt64?
    public var peakResidentBytes: UInt64?
    /// Failures counted under pressure (a full disk, a failing device),
    /// one per condition seen since the worker started (Docs/pressure.md);
    /// absent when none.
    public var pressure: [PressureCount]?
    /// Served read-only (`read_only`, `--read-only`, `ro`); absent when not.
    public var readOnly: Bool?

    public init(mountpoint: String, image: String, module: ModuleInfo, state: MountState,
                uptimeSeconds: Double, operations: [String: UInt64], resentRetries: UInt64? = nil,
                latencyMicros: LatencySummary, readOnly: Bool? = nil) {
        self.readOnly = readOnly
        self.resentRetries = resentRetries.flatMap { $0 == 0 ? nil : $0 }
        self.mountpoint = mountpoint
        self.image = image
        self.module = module
        self.state = state
        self.uptimeSeconds = uptimeSeconds
        self.operations = operations
        self.latencyMicros = latencyMicros
    }
}

/// A mount's buffer cache: its configured size (`cache_mib`), the memory
/// it holds, what it caches now, how much of that is dirty, and its
/// lookups since the worker started.
public struct CacheStatus: Codable, Equatable, Sendable {
    public var capacityBytes: UInt64
    public var allocatedBytes: UInt64
    public var cachedBytes: UInt64
    public var dirtyBytes: UInt64
    public var hits: UInt64
    public var misses: UInt64
    public init(capacityBytes: UInt64, allocatedBytes: UInt64, cachedBytes: UInt64, dirtyBytes: UInt64,
                hits: UInt64, misses: UInt64) {
        self.capacityBytes = capacityBytes; self.allocatedBytes = allocatedBytes; self.cachedBytes = cachedBytes
        self.dirtyBytes = dirtyBytes; self.hits = hits; self.misses = misses
    }
    /// Hits per lookup, 0...1 (nil before the first).
    public var hitRate: Double? { hits + misses == 0 ? nil : Double(hits) / Double(hits + misses) }
}

/// One condition of a mount's pressure log: what failed, with which error,
/// how often.
public struct PressureCount: Codable, Equatable, Sendable {
    /// What did not happen: "requests failed", "provenance not recorded", ...
    public var condition: String
    /// The errno's name: "ENOSPC", "EIO", "EUCLEAN", ...
    public var error: String
    /// Occurrences since the mount's worker started.
    public var count: UInt64
    /// Seconds since the last one.
    public var lastSecondsAgo: Double
    /// Not cleared yet: it happened within the last interval.
    public var ongoing: Bool

    public init(condition: String, error: String, count: UInt64, lastSecondsAgo: Double, ongoing: Bool) {
        self.condition = condition
        self.error = error
        self.count = count
        self.lastSecondsAgo = lastSecondsAgo
        self.ongoing = ongoing
    }
}

/// The version serving is on probation: a fault, a hang or a failed health
/// check in it rolls the mount back.
public struct ProbationStatus: Codable, Equatable, Sendable {
    public var secondsLeft: Double
    public init(secondsLeft: Double) { self.secondsLeft = secondsLeft }
}

public struct ModuleInfo: Codable, Equatable, Sendable {
    /// The file system name the module declares ("xv6fs").
    public var name: String
    public var version: String
    /// The module file it was loaded from.
    public var path: String

    public init(name: String, version: String, path: String) {
        self.name = name
        self.version = version
        self.path = path
    }
}

/// Request latency in microseconds.
public struct LatencySummary: Codable, Equatable, Sendable {
    public var p50: UInt64
    public var p90: UInt64
    public var p99: UInt64
    public var max: UInt64

    public init(p50: UInt64, p90: UInt64, p99: UInt64, max: UInt64) {
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.max = max
    }

    public static let zero = LatencySummary(p50: 0, p90: 0, p99: 0, max: 0)
}

/// The outcome of an upgrade or rollback; also one entry of the history.
/// `bentoctl upgrade --json` and `rollback --json` print this object.
public struct UpgradeReport: Codable, Equatable, Sendable {
    public static let upgraded = UpgradeResult.upgraded
    public static let rolledBack = UpgradeResult.rolledBack
    public static let refused = UpgradeResult.refused

    public var result: UpgradeResult
    public var action: UpgradeAction?
    public var mountpoint: String?
    /// The module file asked for; once upgraded, what the mount serves:
    /// for a stack, its spec (the paths, top first, one per line).
    public var module: String?
    /// The layer of a stack that was replaced ("provenance"), and the
    /// versions are that layer's; absent for a mount of one module.
    public var layer: String?
    public var fromVersion: String?
    public var toVersion: String?
    /// From closing the gate to reopening it.
    public var pauseMicros: UInt64?
    /// Size of the state handed from the old instance to the new one.
    public var stateBytes: UInt64?
    /// Its format, e.g. "xv6fs/3".
    public var stateFormat: String?
    /// What the kernel held at the swap (inodes it had looked up or opened,
    /// open handles): the host's table, left in place for the new version.
    public var heldInodes: UInt64?
    public var heldHandles: UInt64?
    /// The table went through the state instead (a version that keeps its
    /// own): correct, but the pause grows with it.
    public var tableCopied: Bool?
    /// Why it was not upgraded.
    public var error: String?
    /// When it happened, RFC 3339 in UTC ("2025-01-31T12:00:00Z").
    public var time: String?
    /// Each phase that ran, in order, with its duration.
    public var phases: [PhaseTiming]?

    public init(result: UpgradeResult, action: UpgradeAction? = nil, mountpoint: String? = nil, module: String? = nil,
                fromVersion: String? = nil, toVersion: String? = nil, pauseMicros: UInt64? = nil,
                stateBytes: UInt64? = nil, error: String? = nil, time: String? = nil, phases: [PhaseTiming]? = nil) {
        self.result = result
        self.action = action
        self.mountpoint = mountpoint
        self.module = module
        self.fromVersion = fromVersion
        self.toVersion = toVersion
        self.pauseMicros = pauseMicros
        self.stateBytes = stateBytes
        self.error = error
        self.time = time
        self.phases = phases
    }
}

/// One phase of an upgrade and how long it took.
public struct PhaseTiming: Codable, Equatable, Sendable {
    public var phase: UpgradePhase
    public var micros: UInt64
    public init(phase: UpgradePhase, micros: UInt64) { self.phase = phase; self.micros = micros }
}

/// A mount as `bentoctl status` shows it.
public enum MountState: String, Codable, Sendable {
    case serving
    /// Its worker is being replaced: status cannot ask it now.
    case restarting
    case stopped
}

/// What an upgrade report is about.
public enum UpgradeAction: String, Codable, Sendable {
    case upgrade, rollback
    /// A version on probation failed and the one before was put back.
    case autoRollback = "auto-rollback"
}

/// How an upgrade or rollback ended.
public enum UpgradeResult: String, Codable, Sendable {
    case upgraded
    /// The old version serves again, from the same state.
    case rolledBack = "rolled-back"
    /// Nothing changed; I/O never paused.
    case refused
}

/// The phases of Docs/upgrade.md, in order.
public enum UpgradePhase: String, Codable, Sendable {
    case preflight, quiesce, export, `import`, resume
}
