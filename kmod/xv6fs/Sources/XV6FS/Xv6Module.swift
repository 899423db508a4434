import BentoKit
import XV6Layout

/// The module object a module file hands the host: xv6fs at one version.
/// Version 1 is the plain file system; version 2 adds provenance.
public final class Xv6Module: BentoModule, Sendable {
    public static let fileSystemName = "xv6fs"
    /// The plain file system's state (see HandoverState); lookup counts and
    /// handles stay in the host's table.
    public static let stateFormat = StateFormat(name: "xv6fs", version: 3)
    /// That state plus the provenance recorder's.
    public static let provenanceStateFormat = StateFormat(name: "xv6fs", version: 4)
    /// The same two with the host's table copied in: what earlier builds,
    /// which kept their own table, export and import.
    public static let copiedStateFormat = StateFormat(name: "xv6fs", version: 1)
    public static let copiedProvenanceStateFormat = StateFormat(name: "xv6fs", version: 2)

    public let descriptor: ModuleDescriptor
    let recordsProvenance: Bool
    /// The format features this version serves (Docs/on-disk-format.md):
    /// it refuses an image with other incompat features, and serves one
    /// with other ro_compat features read-only. Versions 1 and 2 know none.
    public let knownFeatures: FeatureSet
    /// Version 3 stores extended attributes, ACLs among them, and wants the
    /// kernel to enforce those.
    public var posixACL: Bool { knownFeatures.contains(.xattr) }
    /// "xv6fs 2.0.0", for messages.
    var name: String { "\(descriptor.fileSystem) \(descriptor.version)" }

    public init(version: SemanticVersion, provenance: Bool = false, knownFeatures: FeatureSet = .none) {
        recordsProvenance = provenance
        self.knownFeatures = knownFeatures
        // Both versions speak all four formats, both ways, and prefer the
        // ones that leave the host's table in place. Version 1 records no
        // provenance, but a gap it is handed (operations version 2 could
        // not record on a full disk) goes on to the next version that does.
        let formats = [Self.provenanceStateFormat, Self.stateFormat, Self.copiedProvenanceStateFormat, Self.copiedStateFormat]
        descriptor = ModuleDescriptor(fileSystem: Self.fileSystemName, version: version,
                                      exportFormats: formats, importFormats: formats)
    }

    public func mount(_ superBlock: SuperBlock) throws -> any FileSystem {
        let fs = try Xv6FileSystem.mount(superBlock, knownFeatures: knownFeatures, reader: name)
        fs.storesXattrs = knownFeatures.contains(.xattr)
        fs.dataFeatures = knownFeatures.contains(.bigfile)
        if recordsProvenance { fs.recordProvenance(fileIno: nil) }
        return fs
    }

    public func restore(_ superBlock: SuperBlock, from state: ExportedState) throws -> any FileSystem {
        guard descriptor.importFormats.contains(state.format) else { throw Errno.EINVAL }
        let handover = try HandoverState(decoding: state.bytes, format: state.format)
        let fs = try handover.restore(superBlock, knownFeatures: knownFeatures, reader: name)
        fs.storesXattrs = knownFeatures.contains(.xattr)
        fs.dataFeatures = knownFeatures.contains(.bigfile)
        if recordsProvenance { fs.recordProvenance(fileIno: handover.provenanceIno, gap: handover.provenanceGap) }
        else { fs.carriedProvenanceGap = handover.provenanceGap }
        return fs
    }

    /// The upgrade's preflight: refuses an image with incompat features
    /// this version does not know. Reads only the superblock, which the
    /// serving version never rewrites.
    public func checkCanServe(_ superBlock: SuperBlock) throws {
        let sb = try Volume.readSuperblock(superBlock.cache)
        if case .refused(let unknown) = sb.features.support(knowing: knownFeatures) {
            throw UnsupportedFeatures(unknown: unknown, reader: name)
        }
    }
}
