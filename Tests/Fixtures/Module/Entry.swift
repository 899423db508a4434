import BentoKit
import Glibc

// Module files that fail an upgrade on purpose, for the upgrade tests: each
// is this one source built with one define (Tests/Fixtures/<Name> links
// here). None serves a file system; they only need to be loadable.
//   FIXTURE_IMPORT_FAILS      xv6fs 9.0.0 whose import throws EIO
//   FIXTURE_OTHER_FILE_SYSTEM "otherfs" 1.0.0
//   FIXTURE_NO_COMMON_FORMAT  xv6fs 9.0.0 importing only state format xv6fs/99
//   FIXTURE_SLOW_IMPORT       xv6fs 9.0.0 whose import takes 5 s, then throws
final class FixtureModule: BentoModule {
    let descriptor: ModuleDescriptor

    init() {
        #if FIXTURE_OTHER_FILE_SYSTEM
        let name = "otherfs"
        #else
        let name = "xv6fs"
        #endif
        #if FIXTURE_NO_COMMON_FORMAT
        let imports = [StateFormat(name: "xv6fs", version: 99)]
        #else
        let imports = [StateFormat(name: "xv6fs", version: 1)]
        #endif
        descriptor = ModuleDescriptor(fileSystem: name, version: SemanticVersion(9, 0, 0),
                                      exportFormats: imports, importFormats: imports)
    }

    func mount(_ superBlock: SuperBlock) throws -> any FileSystem { throw Errno.ENOSYS }

    func restore(_ superBlock: SuperBlock, from state: ExportedState) throws -> any FileSystem {
        #if FIXTURE_SLOW_IMPORT
        sleep(5)
        #endif
        throw Errno.EIO
    }
}

@_cdecl("bento_module_entry")
public func bentoModuleEntry() -> UnsafeRawPointer { entryRecord }

nonisolated(unsafe) private let entryRecord = BentoModuleEntry.make(FixtureModule())
