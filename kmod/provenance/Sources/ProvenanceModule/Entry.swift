import BentoKit
import ProvenanceLayer

private let module = ProvenanceLayerModule(version: SemanticVersion(1, 0, 0))

/// The module file's one C-ABI symbol: the host resolves it with dlsym.
@_cdecl("bento_module_entry")
public func bentoModuleEntry() -> UnsafeRawPointer {
    entryRecord
}

/// Made once: the host may resolve and call the entry more than once.
nonisolated(unsafe) private let entryRecord = BentoModuleEntry.make(module)
