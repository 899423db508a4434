/// The module file's one C-ABI entry point and the SDK ABI version it carries.
///
/// A module file exports `bento_module_entry`, a C function without arguments
/// that returns a pointer to a `BentoModuleEntry`. The host reads `magic` and
/// `abiVersion` at fixed offsets before it touches any Swift type, so a file
/// built against another SDK is refused before a cast can go wrong.
public enum BentoABI {
    /// Bumped whenever a frozen type or a protocol requirement of the SDK changes.
    /// `@inlinable` so that the number is compiled into the module, not read
    /// from the BentoKit library the host has loaded.
    @inlinable public static var version: UInt32 { 2 }

    /// "BENTOMOD" in ASCII, little-endian.
    @inlinable public static var magic: UInt64 { 0x444F_4D4F_544E_4542 }

    /// The symbol every module file exports.
    public static let entrySymbol = "bento_module_entry"
}

/// What `bento_module_entry` points to. Layout is fixed: magic at 0, ABI
/// version at 8, the module object at 16.
@frozen
public struct BentoModuleEntry {
    public var magic: UInt64
    public var abiVersion: UInt32
    public var module: Unmanaged<AnyObject>

    @inlinable
    public init(magic: UInt64, abiVersion: UInt32, module: Unmanaged<AnyObject>) {
        self.magic = magic; self.abiVersion = abiVersion; self.module = module
    }

    /// Builds the entry record for a module; call it once from the module's
    /// `bento_module_entry` and return the pointer. The record is never freed:
    /// module files are never unloaded.
    @inlinable
    public static func make(_ module: some BentoModule) -> UnsafeRawPointer {
        record(module as AnyObject)
    }

    /// The same for a layer's module file (Layer.swift).
    @inlinable
    public static func make(_ layer: some BentoLayerModule) -> UnsafeRawPointer {
        record(layer as AnyObject)
    }

    @inlinable
    static func record(_ object: AnyObject) -> UnsafeRawPointer {
        let record = UnsafeMutablePointer<BentoModuleEntry>.allocate(capacity: 1)
        record.initialize(to: BentoModuleEntry(
            magic: BentoABI.magic,
            abiVersion: BentoABI.version,
            module: Unmanaged.passRetained(object)))
        return UnsafeRawPointer(record)
    }
}
