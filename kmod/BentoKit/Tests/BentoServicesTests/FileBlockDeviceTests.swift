import BentoKit
import BentoServices
import Glibc
import Testing

@Suite struct FileBlockDeviceTests {
    /// A run of blocks written in one call lands block by block where a
    /// write of each would have put it; a run past the end writes nothing.
    @Test func aRunOfBlocksLandsInPlace() throws {
        var template = Array("/tmp/bento-fbd-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        #expect(fd >= 0)
        let path = String(cString: template)
        defer { unlink(path) }
        #expect(ftruncate(fd, 8 * 4096) == 0)
        let device = try FileBlockDevice(fd: fd, path: path)
        let run = UnsafeMutableRawBufferPointer.allocate(byteCount: 3 * 4096, alignment: 4096)
        defer { run.deallocate() }
        for i in 0..<(3 * 4096) { run[i] = UInt8(0x10 + i / 4096) }
        try device.write(blocks: 4, from: UnsafeRawBufferPointer(run))
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { page.deallocate() }
        for block in 0..<8 {
            try device.read(block: UInt64(block), into: page)
            let expected: UInt8 = block >= 4 && block < 7 ? UInt8(0x0C + block) : 0
            #expect(page.allSatisfy { $0 == expected }, "block \(block)")
        }
        #expect(throws: Errno.EIO) { try device.write(blocks: 6, from: UnsafeRawBufferPointer(run)) }
        try device.read(block: 6, into: page)
        #expect(page.allSatisfy { $0 == 0x12 })
        #expect(throws: Errno.EIO) {
            try device.write(blocks: 0, from: UnsafeRawBufferPointer(rebasing: run[0..<100]))
        }
    }
}
