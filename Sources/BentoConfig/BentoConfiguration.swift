// The daemon's config file: which mounts bento-upgraded serves.
//
// `/etc/bento/bento.toml` (or `bento-upgraded --config FILE`) is TOML:
//
// ```toml
// # optional daemon settings
// control_socket = "/run/bento/control.sock"
// state_dir = "/var/lib/bento"
//
// [[mount]]
// image = "/var/lib/bento/xv6.img"
// mountpoint = "/mnt/xv6"
// module = "/usr/local/lib/bento/modules/xv6fs-1.0.0.so"
// threads = 8                 # 16 with writeback_cache = true
// cache_mib = 256
// allow_other = false
// ```
//
// Top level, all optional:
//   control_socket  absolute path of the control socket (bentoctl talks to it)
//   state_dir       absolute path of the state directory (upgrade journal)
//
// One `[[mount]]` table per file system to serve (none: the daemon serves
// only mounts added by `mount -t xv6`):
//   name         optional label, for logs and bentoctl output
//   image        absolute path of the image file or block device ...
//   device       ... or the same under this name; exactly one of the two
//   mountpoint   absolute path; no two mounts may share one
//   module       absolute path of the module file (xv6fs-<version>.so), or
//                a stack of them, top first: layers over a file system,
//                ["/.../provenance-1.0.0.so", "/.../xv6fs-1.0.0.so"]
//   threads      FUSE worker threads, 1...256, default 16
//   poll_us      how long the thread waiting for requests polls before it
//                sleeps, in microseconds, 0...1000 (0: never), default 50
//   cache_mib    buffer cache size in MiB, 1...65536, default 256
//   allow_other  let users other than root use the mount, default false
//   writeback_cache  let the kernel cache writes (FUSE writeback cache),
//                default false (Docs/caching.md)
//   probation_seconds   after an upgrade, how long a fault or hang of the new
//                version rolls the mount back, 0...86400, default 60
//   hang_limit_seconds  a request running longer is treated as a fault,
//                1...3600, default 30
//   health_max_error_increase_percent  during a probation, how many more
//                replies in a hundred may be errors such as EIO than before
//                the upgrade, 0...100, default 1
//   health_max_p99_factor  during a probation, how many times slower the
//                p99 latency may get, 1...1000, default 4
//
// Everything is checked before anything is mounted: any problem (bad TOML,
// an unknown key, a wrong type, a missing key, a value out of range, a
// relative path, a mountpoint, image or name used twice)
// is a `ConfigError` naming the file, the line and the field. Whether the
// files exist is not checked here: the daemon finds that out when it mounts.

/// What the daemon serves, as read from the config file.
public struct BentoConfiguration: Equatable, Sendable {
    /// Where the daemon looks when `--config` is not given.
    public static let defaultPath = "/etc/bento/bento.toml"

    public var mounts: [MountConfiguration]
    /// `control_socket`; nil: the daemon's default.
    public var controlSocket: String?
    /// `state_dir`; nil: the daemon's default.
    public var stateDirectory: String?

    public init(mounts: [MountConfiguration], controlSocket: String? = nil, stateDirectory: String? = nil) {
        self.mounts = mounts
        self.controlSocket = controlSocket
        self.stateDirectory = stateDirectory
    }

    /// Reads and checks the config file at `path`.
    public static func load(path: String) throws(ConfigError) -> BentoConfiguration {
        let text = try readConfigFile(path)
        return try parse(text, source: path)
    }

    /// Checks config text; `source` names it in errors (usually its path).
    public static func parse(_ text: String, source: String) throws(ConfigError) -> BentoConfiguration {
        try Checker(text: text, source: source).configuration()
    }
}

/// One `[[mount]]` table: a file system image served by a module at a mountpoint.
public struct MountConfiguration: Equatable, Sendable {
    /// Request threads. More than the callers' requests in flight only add
    /// wake-ups: eight callers ran 15-30% faster with 8 than with 16
    /// (Docs/caching.md, "How many request threads"). With the writeback
    /// cache, a space check holds its thread while the kernel writes back,
    /// and half the threads may (Docs/enospc.md): 16 keep eight writers'
    /// checks exact.
    public static func defaultThreads(writebackCache: Bool) -> Int { writebackCache ? 16 : 8 }
    public static let threadsRange = 1...256
    public static let pollRange = 0...1000
    public static let defaultCacheMiB = 256
    public static let cacheMiBRange = 1...65536
    public static let defaultProbationSeconds = 60
    public static let probationRange = 0...86400
    public static let defaultHangLimitSeconds = 30
    public static let hangLimitRange = 1...3600
    public static let defaultHealthMaxErrorIncreasePercent = 1
    public static let defaultHealthMaxP99Factor = 4

    /// Optional label.
    public var name: String?
    /// An image file or a block device (key `image` or `device`).
    public var image: String
    public var mountpoint: String
    /// Path of the module file; for a stack, the paths top first, one
    /// per line (BentoHost's ModuleStack spec).
    public var module: String
    public var threads: Int
    /// Key `poll_us`; nil: the daemon's default.
    public var pollMicroseconds: Int?
    /// Key `cache_mib`.
    public var cacheMiB: Int
    /// Key `allow_other`.
    public var allowOther: Bool
    /// Key `writeback_cache`.
    public var writebackCache: Bool
    /// Key `read_only`.
    public var readOnly: Bool
    /// Key `probation_seconds`.
    public var probationSeconds: Int
    /// Key `hang_limit_seconds`.
    public var hangLimitSeconds: Int
    /// Keys `health_max_error_increase_percent`, `health_max_p99_factor`.
    public var healthMaxErrorIncreasePercent: Int
    public var healthMaxP99Factor: Int

    public init(
        name: String? = nil, image: String, mountpoint: String, module: String,
        threads: Int? = nil,
        pollMicroseconds: Int? = nil,
        cacheMiB: Int = MountConfiguration.defaultCacheMiB,
        allowOther: Bool = false,
        writebackCache: Bool = false,
        readOnly: Bool = false,
        probationSeconds: Int = MountConfiguration.defaultProbationSeconds,
        hangLimitSeconds: Int = MountConfiguration.defaultHangLimitSeconds,
        healthMaxErrorIncreasePercent: Int = MountConfiguration.defaultHealthMaxErrorIncreasePercent,
        healthMaxP99Factor: Int = MountConfiguration.defaultHealthMaxP99Factor
    ) {
        self.healthMaxErrorIncreasePercent = healthMaxErrorIncreasePercent
        self.healthMaxP99Factor = healthMaxP99Factor
        self.probationSeconds = probationSeconds
        self.hangLimitSeconds = hangLimitSeconds
        self.name = name
        self.image = image
        self.mountpoint = mountpoint
        self.module = module
        self.threads = threads ?? Self.defaultThreads(writebackCache: writebackCache)
        self.pollMicroseconds = pollMicroseconds
        self.cacheMiB = cacheMiB
        self.allowOther = allowOther
        self.writebackCache = writebackCache
        self.readOnly = readOnly
    }
}
