import BentoKit
import Glibc

/// A module file, loaded and checked.
public struct LoadedModule {
    public let path: String
    public let module: any BentoModule
    public var descriptor: ModuleDescriptor { module.descriptor }
}

/// Why a module file was refused. Each message names the file.
public enum ModuleLoadError: Error, Equatable, CustomStringConvertible {
    case missing(String)
    case notLoadable(String, String)
    case notAModule(String)
    case abiMismatch(String, found: UInt32, expected: UInt32)
    case wrongFileSystem(String, found: String, expected: String)

    public var description: String {
        switch self {
        case .missing(let path): "\(path): no such module file"
        case .notLoadable(let path, let why): "\(path): cannot be loaded: \(why)"
        case .notAModule(let path): "\(path): not a Bento module (no valid \(BentoABI.entrySymbol) entry)"
        case .abiMismatch(let path, let found, let expected):
            "\(path): built for Bento SDK ABI \(found), this host speaks ABI \(expected)"
        case .wrongFileSystem(let path, let found, let expected):
            "\(path): serves file system \"\(found)\", not \"\(expected)\""
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
        guard let module = entry.module.takeUnretainedValue() as? any BentoModule else { throw .notAModule(path) }
        if let expected = fileSystem, module.descriptor.fileSystem != expected {
            throw .wrongFileSystem(path, found: module.descriptor.fileSystem, expected: expected)
        }
        return LoadedModule(path: path, module: module)
    }
}
