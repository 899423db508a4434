import XV6Layout

/// Little-endian field access on a block held as a byte array.
extension Array where Element == UInt8 {
    func u32(_ offset: Int) -> UInt32 { withUnsafeBytes { $0.u32(offset) } }
    func u64(_ offset: Int) -> UInt64 { withUnsafeBytes { $0.u64(offset) } }
    mutating func set(_ offset: Int, _ value: UInt64) { withUnsafeMutableBytes { $0.set(offset, value) } }
}

extension Array where Element == UInt8 {
    func u16(_ offset: Int) -> UInt16 { withUnsafeBytes { $0.u16(offset) } }
}
