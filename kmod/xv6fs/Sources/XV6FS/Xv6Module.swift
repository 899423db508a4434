import BentoKit

/// The module object a module file hands the host: xv6fs at one version.
/// Version 1 is the plain file system; version 2 adds provenance.
public final class Xv6Module: BentoModule, Sendable {
    public static let fileSystemName = "xv6fs"
    /// The plain file system's state (see HandoverState).
    public static let stateFormat = StateFormat(name: "xv6fs", version: 1)
    /// Version 1's state plus the provenance recorder's.
    public static let provenanceStateFormat = StateFormat(name: "xv6fs", version: 2)

    public let descriptor: ModuleDescriptor
    let recordsProvenance: Bool

    public init(version: SemanticVersion, provenance: Bool = false) {
        recordsProvenance = provenance
        // Version 2 also speaks version 1's format, both ways, so that an
        // upgrade to it and a rollback from it both carry the state.
        let formats = provenance ? [Self.provenanceStateFormat, Self.stateFormat] : [Self.stateFormat]
        descriptor = ModuleDescriptor(fileSystem: Self.fileSystemName, version: version,
                                      exportFormats: formats, importFormats: formats)
    }

    public func mount(_ superBlock: SuperBlock) throws -> any FileSystem {
        let fs = try Xv6FileSystem.mount(superBlock)
        if recordsProvenance { fs.recordProvenance(fileIno: nil) }
        return fs
    }

    public func restore(_ superBlock: SuperBlock, from state: ExportedState) throws -> any FileSystem {
        guard descriptor.importFormats.contains(state.format) else { throw Errno.EINVAL }
        let handover = try HandoverState(decoding: state.bytes, format: state.format)
        let fs = try handover.restore(superBlock)
        if recordsProvenance { fs.recordProvenance(fileIno: handover.provenanceIno) }
        return fs
    }
}
