/// A small binary encoding for exported state: fixed-width little-endian
/// integers and length-prefixed byte strings. Fast to write during the
/// upgrade pause, and needs nothing outside the SDK.

public struct StateWriter {
    public private(set) var bytes: [UInt8] = []
    public init(capacity: Int = 4096) { bytes.reserveCapacity(capacity) }

    public mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
    public mutating func write(_ value: Bool) { write(UInt8(value ? 1 : 0)) }
    public mutating func write(bytes value: [UInt8]) {
        write(UInt64(value.count))
        bytes.append(contentsOf: value)
    }
    public mutating func write(_ value: String) { write(bytes: Array(value.utf8)) }
}

/// Reads what a StateWriter wrote; every read checks bounds and throws
/// EINVAL on a short or malformed input instead of trapping.
public struct StateReader {
    public let bytes: [UInt8]
    public private(set) var position = 0
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { position == bytes.count }

    public mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws -> T {
        let size = MemoryLayout<T>.size
        guard bytes.count - position >= size else { throw Errno.EINVAL }
        let value = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: position, as: T.self) }
        position += size
        return T(littleEndian: value)
    }
    public mutating func read(_: Bool.Type = Bool.self) throws -> Bool {
        try read(UInt8.self) != 0
    }
    public mutating func readBytes() throws -> [UInt8] {
        let count = try read(UInt64.self)
        guard count <= UInt64(bytes.count - position) else { throw Errno.EINVAL }
        let value = Array(bytes[position..<position + Int(count)])
        position += Int(count)
        return value
    }
    public mutating func readString() throws -> String {
        String(decoding: try readBytes(), as: UTF8.self)
    }
    /// A count of items to follow, refused when the rest of the input could
    /// not possibly hold that many items of `minimumSize` bytes.
    public mutating func readCount(minimumSize: Int) throws -> Int {
        let count = try read(UInt64.self)
        guard count <= UInt64((bytes.count - position) / max(minimumSize, 1)) else { throw Errno.EINVAL }
        return Int(count)
    }
}
