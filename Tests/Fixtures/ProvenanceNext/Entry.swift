import BentoKit
import ProvenanceLayer

// The provenance layer as a later version (1.1.0): the same code, for the
// tests that upgrade one layer of a stack (Tests/mount/stack.sh).
private let module = ProvenanceLayerModule(version: SemanticVersion(1, 1, 0))

@_cdecl("bento_module_entry")
public func bentoModuleEntry() -> UnsafeRawPointer {
    entryRecord
}

nonisolated(unsafe) private let entryRecord = BentoModuleEntry.make(module)
