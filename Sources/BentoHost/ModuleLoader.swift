import BentoKit
import Glibc

/// A loaded module file. Sendable: a module value is an immutable entry
/// record whose calls make new instances; it holds no mutable state.
public struct LoadedModule: @unchecked Sendable {
    /// What the file holds: a file system, which serves a block device,
    /// or a layer, which serves over another module (Layer.swift).
    public enum Kind {
        case fileSystem(any BentoModule)
        case layer(any BentoLayerModule)
    }

    public let path: String
    public let kind: Kind
    public var descriptor: ModuleDescriptor {
        switch kind {
        case .fileSystem(let module): module.descriptor
        case .layer(let layer): layer.descriptor
        }
    }
    /// The file system module; nil for a layer.
    public var module: (any BentoModule)? {
        if case .fileSystem(let module) = kind { module } else { nil }
    }
    /// The layer; nil for a file system module.
    public var layer: (any BentoLayerModule)? {
        if case .layer(let layer) = kind { layer } else { nil }
    }
    /// "xv6fs 1.0.0", for messages.
    public var name: String { "\(descriptor.fileSystem) \(descriptor.version)" }
}

/// Why a module file was refused. Each message names the file.
public enum ModuleLoadError: Error, Equatable, CustomStringConvertible {
    case missing(String)
    case notLoadable(String, String)
    case notAModule(String)
    case abiMismatch(String, found: UInt32, expected: UInt32)
    case wrongFileSystem(String, found: String, expected: String)
    case untrusted(String, String)
    /// In a stack: a layer where the file system goes (last), or a file
    /// system where a layer goes; or two layers of one name.
    case layerAtBottom(String)
    case fileSystemAbove(String)
    case sameLayerTwice(String)

    public var description: String {
        switch self {
        case .missing(let path): "\(path): no such module file"
        case .notLoadable(let path, let why): "\(path): cannot be loaded: \(why)"
        case .notAModule(let path): "\(path): not a Bento module (no valid \(BentoABI.entrySymbol) entry)"
        case .abiMismatch(let path, let found, let expected):
            "\(path): built for Bento SDK ABI \(found), this host speaks ABI \(expected)"
        case .wrongFileSystem(let path, let found, let expected):
            "\(path): serves file system \"\(found)\", not \"\(expected)\""
        case .untrusted(let path, let why): "\(path): refused, untrusted: \(why)"
        case .layerAtBottom(let path): "\(path) is a layer: the last module of a stack must be a file system"
        case .fileSystemAbove(let path): "\(path) is a file system, not a layer: only the last module of a stack may be one"
        case .sameLayerTwice(let name): "the stack has two layers named \"\(name)\""
        }
    }
}

/// Loads module files with dlopen and checks them before any Swift type
/// from them is touched.
public enum ModuleLoader {
    /// Loads the module file at `path`; with `fileSystem`, also checks the
    /// module serves that file system. Module files are never unloaded: the
    /// Swift runtime keeps pointers into every image it has seen.
    public static func load(path: String, fileSystem: String? = nil) throws(ModuleLoadError) -> LoadedModule {
        var st = stat()
        guard stat(path, &st) == 0 else { throw .missing(path) }
        if let why = untrustedReason(path) { throw .untrusted(path, why) }
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            throw .notLoadable(path, dlerror().map { String(cString: $0) } ?? "unknown dlopen error")
        }
        guard let symbol = dlsym(handle, BentoABI.entrySymbol) else { throw .notAModule(path) }
        typealias Entry = @convention(c) () -> UnsafeRawPointer?
        guard let record = unsafeBitCast(symbol, to: Entry.self)() else { throw .notAModule(path) }
        // Fixed offsets, read before trusting the layout of anything else.
        guard record.loadUnaligned(as: UInt64.self) == BentoABI.magic else { throw .notAModule(path) }
        let abi = record.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        guard abi == BentoABI.version else { throw .abiMismatch(path, found: abi, expected: BentoABI.version) }
        let entry = record.load(as: BentoModuleEntry.self)
        let object = entry.module.takeUnretainedValue()
        let kind: LoadedModule.Kind
        if let module = object as? any BentoModule { kind = .fileSystem(module) }
        else if let layer = object as? any BentoLayerModule { kind = .layer(layer) }
        else { throw .notAModule(path) }
        let loaded = LoadedModule(path: absolute(path), kind: kind)
        if let expected = fileSystem, loaded.descriptor.fileSystem != expected {
            throw .wrongFileSystem(path, found: loaded.descriptor.fileSystem, expected: expected)
        }
        return loaded
    }

    /// Why code at `path` could have been put there by someone other than
    /// root, if it could: the file must be a regular file owned by root and
    /// writable by nobody else, and so must every directory above it (a
    /// sticky directory such as /tmp is fine: others cannot replace root's
    /// entries in it).
    static func untrustedReason(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return "cannot resolve the path" }
        var current = String(cString: resolved)
        free(resolved)
        var st = stat()
        guard stat(current, &st) == 0 else { return "cannot stat it" }
        guard st.st_mode & S_IFMT == S_IFREG else { return "not a regular file" }
        guard st.st_uid == 0 else { return "owned by uid \(st.st_uid), not root" }
        guard st.st_mode & 0o022 == 0 else { return "writable by group or others (mode \(String(st.st_mode & 0o7777, radix: 8)))" }
        while current != "/" {
            current = parent(of: current)
            guard stat(current, &st) == 0 else { return "cannot stat \(current)" }
            guard st.st_uid == 0 else { return "directory \(current) is owned by uid \(st.st_uid), not root" }
            if st.st_mode & 0o022 != 0 && st.st_mode & UInt32(S_ISVTX) == 0 {
                return "directory \(current) is writable by group or others (mode \(String(st.st_mode & 0o7777, radix: 8)))"
            }
        }
        return nil
    }

    private static func absolute(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    private static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }
}
