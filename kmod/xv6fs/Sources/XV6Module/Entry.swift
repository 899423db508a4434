import BentoKit

// One source, three module files. Versions 2 and 3 are built from the same
// sources under other Swift module names (Sources/XV6FS2, XV6FS3,
// XV6Module2 and XV6Module3 are links to these folders): two versions
// loaded side by side then share no type names, so the Swift runtime cannot
// mistake one's types for the other's.
#if XV6FS_V3
import XV6FS3
import XV6Layout
private let module = Xv6Module(version: SemanticVersion(3, 0, 0), provenance: true,
                               knownFeatures: FeatureSet([.xattr, .bigfile, .unwritten, .keepSize]))
#elseif XV6FS_V2
import XV6FS2
private let module = Xv6Module(version: SemanticVersion(2, 0, 0), provenance: true)
#else
import XV6FS
private let module = Xv6Module(version: SemanticVersion(1, 0, 0))
#endif

/// The module file's one C-ABI symbol: the host resolves it with dlsym.
@_cdecl("bento_module_entry")
public func bentoModuleEntry() -> UnsafeRawPointer {
    entryRecord
}

/// Made once: the host may resolve and call the entry more than once.
nonisolated(unsafe) private let entryRecord = BentoModuleEntry.make(module)
