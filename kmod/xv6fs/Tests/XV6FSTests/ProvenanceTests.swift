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

    /// A full disk: data runs out first, records go on from the reserve,
    /// and once that is gone too every operation is still accounted for,
    /// by a gap line ahead of the next record. Each one missed is reported
    /// to the host (which counts them), never logged once per operation.
    @Test func aFullDiskRecordsFromTheReserveThenMarksTheGap() throws {
        let device = MemoryBlockDevice(blockCount: 4096)
        try Format.format(device, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        let logged = Messages(), reported = Messages()
        let superBlock = SuperBlock(cache: LRUBufferCache(device: device), journal: nil, kernelMayHoldInodes: false,
                                    log: { logged.append($0) },
                                    report: { condition, error, detail in reported.append("\(condition) \(error) \(detail())") })
        let module = Xv6Module(version: SemanticVersion(2, 0, 0), provenance: true)
        var fs = try module.mount(superBlock)
        let (big, o) = try fs.create(ctx, parent: root, name: "big", mode: 0o644, flags: OpenFlags.readWrite)
        let chunk = [UInt8](repeating: 7, count: 1 << 16)
        var offset: UInt64 = 0
        while true {
            let n = try? chunk.withUnsafeBytes { try fs.write(ctx, ino: big.ino, handle: o.handle, offset: offset, data: $0) }
            guard let n, n > 0 else { break }
            offset += UInt64(n)
        }
        let full = try fs.statfs(ctx, ino: root)
        #expect(full.availableBlocks == 0)
        #expect(full.freeBlocks > 32, "the reserve is left for the records: \(full.freeBlocks) blocks")
        #expect(errno { _ = try chunk.withUnsafeBytes { try fs.write(ctx, ino: big.ino, handle: o.handle, offset: offset, data: $0) } } == .ENOSPC)

        // Changes that need no block go on, recorded from the reserve until
        // it is gone too. On the way, an upgrade to version 1, which
        // records nothing (10 changes), and back: the gap goes along.
        let changes = 6000, underVersion1 = 10
        let v1 = Xv6Module(version: SemanticVersion(1, 0, 0))
        func handOver(_ from: Xv6Module, to next: Xv6Module) throws {
            let format = try #require(from.descriptor.handoverFormat(to: next.descriptor))
            fs = try next.restore(superBlock, from: try fs.exportState(format: format))
        }
        for i in 0..<changes {
            if i == changes - 100 { try handOver(module, to: v1) }
            if i == changes - 100 + underVersion1 { try handOver(v1, to: module) }
            _ = try fs.setattr(ctx, ino: big.ino, SetAttributes(mode: UInt32(0o600 + i % 2)), handle: nil)
        }
        // Room again: the truncate frees the data, and its record follows the gap line.
        _ = try fs.setattr(ctx, ino: big.ino, SetAttributes(size: 0), handle: nil)

        let log = try fs.lookup(.root, parent: root, name: ".provenance")
        let fh = try fs.open(.root, ino: log.ino, flags: OpenFlags.readOnly).handle
        var bytes = [UInt8](repeating: 0, count: Int(log.attributes.size))
        _ = try bytes.withUnsafeMutableBytes { try fs.read(.root, ino: log.ino, handle: fh, offset: 0, into: $0) }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines.allSatisfy { $0.contains(" op=") }, "every line is whole")
        let gaps = lines.filter { $0.contains(" op=gap ") }
        #expect(gaps.count == 1, "\(gaps)")
        let missed = gaps.first.flatMap { $0.split(separator: " ").first { $0.hasPrefix("ops=") } }.flatMap { Int($0.dropFirst(4)) } ?? 0
        let recorded = lines.filter { $0.contains(" op=setattr ") }.count
        #expect(missed > 0 && recorded > 1000, "recorded \(recorded), missed \(missed)")
        #expect(recorded + missed == changes + 1 - underVersion1, "recorded \(recorded) + missed \(missed)")
        #expect(gaps.first?.contains("error=ENOSPC") == true)
        #expect(reported.lines.count == missed, "one report per operation not recorded")
        #expect(reported.lines.allSatisfy { $0 == "provenance not recorded ENOSPC " }, "\(reported.lines.prefix(3))")
        #expect(logged.lines.filter { $0.contains("provenance") }.count == 1, "one line when the gap ends: \(logged.lines)")
        #expect(lines.last?.contains("op=setattr ino=\(big.ino)") == true && lines[lines.count - 2] == gaps.first)
        try fs.destroy()
    }
}
