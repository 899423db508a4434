import BentoKit

/// The module object a module file hands the host: xv6fs at one version.
public final class Xv6Module: BentoModule, Sendable {
    public static let fileSystemName = "xv6fs"
    public static let stateFormat = StateFormat(name: "xv6fs", version: 1)

    public let descriptor: ModuleDescriptor

    public init(version: SemanticVersion) {
        descriptor = ModuleDescriptor(fileSystem: Self.fileSystemName, version: version,
                                      exportFormats: [Self.stateFormat], importFormats: [Self.stateFormat])
    }

    public func mount(_ superBlock: SuperBlock) throws -> any FileSystem {
        try Xv6FileSystem.mount(superBlock)
    }

    public func restore(_ superBlock: SuperBlock, from state: ExportedState) throws -> any FileSystem {
        guard descriptor.importFormats.contains(state.format) else { throw Errno.EINVAL }
        return try HandoverState(decoding: state.bytes).restore(superBlock)
    }
}
