/// The upgrade API: how a module describes itself, exports its in-memory
/// state and is created from the state another version exported.

@frozen
public struct SemanticVersion: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int
    @inlinable public init(_ major: Int, _ minor: Int, _ patch: Int) {
        self.major = major; self.minor = minor; self.patch = patch
    }
    /// Parses "1.2.3".
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 3, let a = parts[0], let b = parts[1], let c = parts[2],
              a >= 0, b >= 0, c >= 0 else { return nil }
        self.init(a, b, c)
    }
    public var description: String { "\(major).\(minor).\(patch)" }
    public static func < (l: SemanticVersion, r: SemanticVersion) -> Bool {
        (l.major, l.minor, l.patch) < (r.major, r.minor, r.patch)
    }
}

/// A named, versioned layout of exported state, e.g. ("xv6fs", 1).
@frozen
public struct StateFormat: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var version: UInt32
    @inlinable public init(name: String, version: UInt32) { self.name = name; self.version = version }
    public var description: String { "\(name)/\(version)" }
}

/// A module instance's in-memory state, as bytes in a known format.
@frozen
public struct ExportedState: Sendable {
    public var format: StateFormat
    public var bytes: [UInt8]
    @inlinable public init(format: StateFormat, bytes: [UInt8]) { self.format = format; self.bytes = bytes }
}

@frozen
public struct ModuleDescriptor: Sendable {
    /// The file system this module serves ("xv6fs"): an upgrade only swaps
    /// a module for another of the same name.
    public var fileSystem: String
    public var version: SemanticVersion
    public var sdkABIVersion: UInt32
    /// Formats, most preferred first.
    public var exportFormats: [StateFormat]
    public var importFormats: [StateFormat]

    @inlinable
    public init(fileSystem: String, version: SemanticVersion, exportFormats: [StateFormat],
                importFormats: [StateFormat]) {
        self.fileSystem = fileSystem
        self.version = version
        self.sdkABIVersion = BentoABI.version
        self.exportFormats = exportFormats
        self.importFormats = importFormats
    }

    /// The format to hand state from `self` to `next` in: the first one
    /// `self` exports that `next` imports, if any.
    public func handoverFormat(to next: ModuleDescriptor) -> StateFormat? {
        exportFormats.first { next.importFormats.contains($0) }
    }
}

/// What `bento_module_entry` hands the host: the module's descriptor and its
/// two ways to make an instance.
public protocol BentoModule: AnyObject {
    var descriptor: ModuleDescriptor { get }
    /// A fresh mount: read the file system from the device, recovering what
    /// a crash left (for a journaling file system, replay the log).
    func mount(_ superBlock: SuperBlock) throws -> any FileSystem
    /// An instance that carries on from a state another instance exported
    /// over the same superblock. Throwing leaves the old instance in charge.
    func restore(_ superBlock: SuperBlock, from state: ExportedState) throws -> any FileSystem
    /// Throws why this version cannot serve the file system behind
    /// `superBlock` (say, the image uses a format feature it does not
    /// know). An upgrade's preflight asks, while the old version still
    /// serves: it must only read, and a refusal costs no pause.
    func checkCanServe(_ superBlock: SuperBlock) throws
    /// The module stores POSIX ACLs (system.posix_acl_access and _default)
    /// as extended attributes and wants the kernel to enforce them
    /// (FUSE_POSIX_ACL). The host asks the kernel at the mount's INIT, once:
    /// a module upgraded in later gets ACL enforcement from the next mount.
    var posixACL: Bool { get }
}

extension BentoModule {
    /// Modules that have nothing to check. A requirement with a default is
    /// an addition that resilient protocols allow: modules built before it
    /// get this one, so the SDK ABI version stays.
    public func checkCanServe(_ superBlock: SuperBlock) throws {}
    public var posixACL: Bool { false }
}
