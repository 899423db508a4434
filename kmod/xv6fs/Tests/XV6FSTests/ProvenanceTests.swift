@_spi(Host) import BentoKit
import BentoServices
import Testing
import XV6FS
import XV6Layout

/// Version 2's provenance records, driven in-process.
@Suite struct ProvenanceTests {
    @Test func everyKindOfChangeIsRecordedOnce() throws {
        let device = MemoryBlockDevice(blockCount: 4096)
        try Format.format(device, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        let superBlock = SuperBlock(cache: LRUBufferCache(device: device))
        let fs = try Xv6Module(version: SemanticVersion(2, 0, 0), provenance: true).mount(superBlock)
        let who = RequestContext(uid: 1000, gid: 1000, pid: 4242)
        let (e, o) = try fs.create(who, parent: root, name: "a \"quoted\" name", mode: 0o644, flags: OpenFlags.readWrite)
        _ = try ([1, 2, 3] as [UInt8]).withUnsafeBytes { try fs.write(who, ino: e.ino, handle: o.handle, offset: 0, data: $0) }
        try fs.release(who, ino: e.ino, handle: o.handle)
        _ = try fs.open(who, ino: e.ino, flags: OpenFlags.writeOnly)
        _ = try fs.setattr(who, ino: e.ino, SetAttributes(mode: 0o600), handle: nil)
        _ = try fs.link(who, ino: e.ino, newParent: root, newName: "second")
        try fs.rename(who, parent: root, name: "second", newParent: root, newName: "third", flags: [])
        try fs.unlink(who, parent: root, name: "third")
        _ = try fs.open(who, ino: e.ino, flags: OpenFlags.readOnly)  // reading is not recorded
        _ = try fs.getattr(who, ino: e.ino)

        let log = try fs.lookup(.root, parent: root, name: ".provenance")
        #expect(log.attributes.mode == FileMode.regular | 0o600)
        #expect(log.attributes.uid == 0)
        let fh = try fs.open(.root, ino: log.ino, flags: OpenFlags.readOnly).handle
        var bytes = [UInt8](repeating: 0, count: Int(log.attributes.size))
        _ = try bytes.withUnsafeMutableBytes { try fs.read(.root, ino: log.ino, handle: fh, offset: 0, into: $0) }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
        let ops = lines.map { $0.split(separator: " ").first { $0.hasPrefix("op=") }.map(String.init) ?? "" }
        #expect(ops == ["op=create", "op=write", "op=open-write", "op=setattr", "op=link", "op=rename", "op=unlink"], "\(lines)")
        #expect(lines.allSatisfy { $0.contains(" pid=4242 uid=1000 ") })
        #expect(lines[0].contains("name=\"a \\\"quoted\\\" name\" ino=\(e.ino)"))
        #expect(lines[5].contains("name=\"second\" newparent=1 newname=\"third\""))
        // Reading the provenance file is not itself recorded.
        #expect(lines.count == 7)
        try fs.destroy()
    }

    /// On a full disk every record fails: each failure is reported as one
    /// condition (the host counts them), never a log line per operation;
    /// the operations themselves succeed.
    @Test func aFullDiskIsReportedNotLogged() throws {
        let device = MemoryBlockDevice(blockCount: 2048)
        try Format.format(device, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        let logged = Messages(), reported = Messages()
        let superBlock = SuperBlock(cache: LRUBufferCache(device: device), journal: nil, kernelMayHoldInodes: false,
                                    log: { logged.append($0) },
                                    report: { condition, error, detail in reported.append("\(condition) \(error) \(detail())") })
        let fs = try Xv6Module(version: SemanticVersion(2, 0, 0), provenance: true).mount(superBlock)
        let (e, o) = try fs.create(ctx, parent: root, name: "fill", mode: 0o644, flags: OpenFlags.readWrite)
        let chunk = [UInt8](repeating: 7, count: 64 << 10)
        var offset: UInt64 = 0
        while true {
            do {
                offset += UInt64(try chunk.withUnsafeBytes { try fs.write(ctx, ino: e.ino, handle: o.handle, offset: offset, data: $0) })
            } catch let error as Errno {
                #expect(error == .ENOSPC)
                break
            }
        }
        for _ in 0..<100 { _ = try fs.setattr(ctx, ino: e.ino, SetAttributes(mode: 0o600), handle: nil) }
        #expect(!reported.lines.isEmpty)
        #expect(reported.lines.allSatisfy { $0 == "provenance not recorded ENOSPC " }, "\(reported.lines.prefix(3))")
        #expect(!logged.lines.contains { $0.contains("provenance") }, "\(logged.lines.prefix(3))")
        try fs.release(ctx, ino: e.ino, handle: o.handle)
        try fs.destroy()
    }
}
