import BentoKit

/// The module object of the provenance layer's module file.
public final class ProvenanceLayerModule: BentoLayerModule, Sendable {
    public static let layerName = "provenance"
    /// The file's inode number and the pending gap (LayerState).
    public static let stateFormat = StateFormat(name: "provenance", version: 1)

    public let descriptor: ModuleDescriptor

    public init(version: SemanticVersion) {
        descriptor = ModuleDescriptor(fileSystem: Self.layerName, version: version,
                                      exportFormats: [Self.stateFormat], importFormats: [Self.stateFormat])
    }

    public func mount(_ superBlock: SuperBlock, over lower: LowerFileSystem) throws -> any FileSystem {
        ProvenanceFileSystem(superBlock, over: lower, fileIno: nil, gap: nil)
    }

    public func restore(_ superBlock: SuperBlock, over lower: LowerFileSystem, from state: ExportedState) throws -> any FileSystem {
        guard state.format == Self.stateFormat else { throw Errno.EINVAL }
        let carried = try LayerState(decoding: state.bytes)
        return ProvenanceFileSystem(superBlock, over: lower, fileIno: carried.fileIno, gap: carried.gap)
    }
}

/// State format provenance/1: the file's inode number (0: not known yet),
/// then whether a gap is pending and, if so, its count, time range and
/// error. Lookup counts and handles stay in the host's table.
struct LayerState {
    var fileIno: InodeNumber?
    var gap: Gap?

    init(fileIno: InodeNumber?, gap: Gap?) {
        self.fileIno = fileIno
        self.gap = gap
    }

    init(decoding bytes: [UInt8]) throws {
        var reader = StateReader(bytes)
        let ino: InodeNumber = try reader.read()
        fileIno = ino == 0 ? nil : ino
        if try reader.read(Bool.self) {
            gap = Gap(operations: try reader.read(),
                      first: Timespec(seconds: try reader.read(), nanoseconds: try reader.read()),
                      last: Timespec(seconds: try reader.read(), nanoseconds: try reader.read()),
                      error: Errno(try reader.read()))
        }
        guard reader.isAtEnd else { throw Errno.EINVAL }
    }

    func encoded() -> [UInt8] {
        var writer = StateWriter(capacity: 64)
        writer.write(fileIno ?? 0)
        writer.write(gap != nil)
        if let gap {
            writer.write(gap.operations)
            writer.write(gap.first.seconds); writer.write(gap.first.nanoseconds)
            writer.write(gap.last.seconds); writer.write(gap.last.nanoseconds)
            writer.write(gap.error.rawValue)
        }
        return writer.bytes
    }
}
