/// A fuse_in_header as the read hooks see it (40 bytes: len, opcode,
/// unique, nodeid, uid, gid, pid, ...), with the two fields they look at.
func requestHeader(opcode: UInt32 = 0, unique: UInt64 = 0) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 40)
    withUnsafeBytes(of: opcode.littleEndian) { bytes.replaceSubrange(4..<8, with: $0) }
    withUnsafeBytes(of: unique.littleEndian) { bytes.replaceSubrange(8..<16, with: $0) }
    return bytes
}
