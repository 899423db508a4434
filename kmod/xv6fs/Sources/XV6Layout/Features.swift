/// Format features, as ext4 has them: three sets of bits in the superblock
/// that say which additions to the base format an image uses.
///
/// - compat: a version that does not know the bit may read and write the
///   image as if it were not there.
/// - roCompat: a version that does not know the bit may read the image, but
///   its writes (or its fsck's repairs) could damage what the feature keeps:
///   it serves the image read-only.
/// - incompat: a version that does not know the bit cannot even read the
///   image correctly: it refuses to mount it.
///
/// An image made before features existed has all three sets zero.
public struct FeatureSet: Equatable, Sendable {
    public var compat: UInt32
    public var roCompat: UInt32
    public var incompat: UInt32

    public init(compat: UInt32 = 0, roCompat: UInt32 = 0, incompat: UInt32 = 0) {
        self.compat = compat; self.roCompat = roCompat; self.incompat = incompat
    }

    public static let none = FeatureSet()

    public var isEmpty: Bool { self == .none }

    public init(_ features: [Feature]) {
        self.init()
        for feature in features { insert(feature) }
    }

    public func contains(_ feature: Feature) -> Bool { bits(feature.kind) & feature.bit != 0 }

    public mutating func insert(_ feature: Feature) { setBits(feature.kind, bits(feature.kind) | feature.bit) }

    public mutating func remove(_ feature: Feature) { setBits(feature.kind, bits(feature.kind) & ~feature.bit) }

    public func bits(_ kind: Feature.Kind) -> UInt32 {
        switch kind {
        case .compat: compat
        case .roCompat: roCompat
        case .incompat: incompat
        }
    }

    private mutating func setBits(_ kind: Feature.Kind, _ value: UInt32) {
        switch kind {
        case .compat: compat = value
        case .roCompat: roCompat = value
        case .incompat: incompat = value
        }
    }

    /// The bits set here that `known` does not have.
    public func subtracting(_ known: FeatureSet) -> FeatureSet {
        FeatureSet(compat: compat & ~known.compat, roCompat: roCompat & ~known.roCompat, incompat: incompat & ~known.incompat)
    }

    /// The bits set both here and in `other`.
    public func intersection(_ other: FeatureSet) -> FeatureSet {
        FeatureSet(compat: compat & other.compat, roCompat: roCompat & other.roCompat, incompat: incompat & other.incompat)
    }

    /// Names for the bits, "xattr" for a defined one, "incompat_bit_5" for
    /// one this build has no name for.
    public var names: [String] {
        Feature.Kind.allCases.flatMap { kind in
            (0..<32).compactMap { bit -> String? in
                let mask = UInt32(1) << bit
                guard bits(kind) & mask != 0 else { return nil }
                return Feature.all.first { $0.kind == kind && $0.bit == mask }?.name ?? "\(kind)_bit_\(bit)"
            }
        }
    }

    /// "xattr, bigfile", or "none".
    public var description: String { isEmpty ? "none" : names.joined(separator: ", ") }
}

/// One defined feature bit. Docs/on-disk-format.md says what each means.
public struct Feature: Equatable, Sendable {
    public enum Kind: String, CaseIterable, Sendable, CustomStringConvertible {
        case compat, roCompat = "ro_compat", incompat
        public var description: String { rawValue }
    }

    public let name: String
    public let kind: Kind
    public let bit: UInt32

    /// Extended attributes and POSIX ACLs (xv6fs 3.0). A version that
    /// ignored them would drop labels and ACLs when it rewrites an inode and
    /// grant access an ACL denies: incompat.
    public static let xattr = Feature(name: "xattr", kind: .incompat, bit: 1 << 0)
    /// A triple-indirect block per inode: files past 4 GiB (xv6fs 3.0). An
    /// older version cannot decode such an inode, and its fsck would free the
    /// blocks it does not see held: incompat.
    public static let bigfile = Feature(name: "bigfile", kind: .incompat, bit: 1 << 1)
    /// Unwritten (preallocated) blocks in block maps, which read as zeroes
    /// whatever the block holds (fallocate without writing zeroes). An older
    /// version would return the blocks' stale contents: incompat.
    public static let unwritten = Feature(name: "unwritten", kind: .incompat, bit: 1 << 2)
    /// Blocks mapped past a file's size (fallocate KEEP_SIZE). An older
    /// version reads such files right (reads stop at the size), but its
    /// truncation and its fsck treat those blocks as errors or leaks:
    /// ro_compat.
    public static let keepSize = Feature(name: "keep_size", kind: .roCompat, bit: 1 << 0)

    public static let all: [Feature] = [xattr, bigfile, unwritten, keepSize]

    public static func named(_ name: String) -> Feature? { all.first { $0.name == name } }
}

/// What a version that knows the features `known` may do with an image.
public enum FeatureSupport: Equatable, Sendable {
    case readWrite
    /// Unknown ro_compat bits (named here): read, never write.
    case readOnly(unknown: FeatureSet)
    /// Unknown incompat bits (named here): do not even read.
    case refused(unknown: FeatureSet)
}

extension FeatureSet {
    /// Unknown compat bits change nothing; unknown ro_compat bits make the
    /// image read-only; unknown incompat bits refuse it.
    public func support(knowing known: FeatureSet) -> FeatureSupport {
        let unknown = subtracting(known)
        if unknown.incompat != 0 { return .refused(unknown: FeatureSet(incompat: unknown.incompat)) }
        if unknown.roCompat != 0 { return .readOnly(unknown: FeatureSet(roCompat: unknown.roCompat)) }
        return .readWrite
    }
}

/// An image with incompat features a version does not know.
public struct UnsupportedFeatures: Error, CustomStringConvertible, Equatable {
    public let unknown: FeatureSet
    /// Who refuses, e.g. "xv6fs 2.0.0".
    public let reader: String

    public init(unknown: FeatureSet, reader: String) { self.unknown = unknown; self.reader = reader }

    public var description: String {
        "the image uses incompat features \(reader) does not know: \(unknown.description)"
    }
}

extension FeatureSet {
    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    /// mkfs's `-O` list, "xattr,bigfile" or "^xattr", applied to `self`:
    /// a name adds its feature, "^name" removes it.
    public func applying(_ list: String) throws(ParseError) -> FeatureSet {
        var result = self
        for item in list.split(separator: ",", omittingEmptySubsequences: false) {
            let removes = item.hasPrefix("^")
            let name = String(removes ? item.dropFirst() : item)
            guard let feature = Feature.named(name) else {
                throw ParseError(description: "unknown feature '\(name)' (known: \(Feature.all.map(\.name).joined(separator: ", ")))")
            }
            if removes { result.remove(feature) } else { result.insert(feature) }
        }
        return result
    }
}
