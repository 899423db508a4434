@_spi(Host) import BentoKit
import BentoServices
import ProvenanceLayer
import Testing
import XV6FS
import XV6Layout

let root: InodeNumber = 1
let layer = ProvenanceLayerModule(version: SemanticVersion(1, 0, 0))
let plain = Xv6Module(version: SemanticVersion(1, 0, 0))

/// xv6fs 1.0.0 on a RAM device with the layer over it, driven in process.
struct Stack {
    let superBlock: SuperBlock
    let lower: LowerFileSystem
    var top: any FileSystem

    init(blocks: UInt64 = 4096, report: (@Sendable (StaticString, any Error, () -> String) -> Void)? = nil,
         log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        let device = MemoryBlockDevice(blockCount: blocks)
        try Format.format(device, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        superBlock = SuperBlock(cache: LRUBufferCache(device: device), journal: nil, kernelMayHoldInodes: false,
                                log: log, report: report)
        lower = LowerFileSystem(try plain.mount(superBlock), descriptor: plain.descriptor)
        top = try layer.mount(superBlock, over: lower)
    }

    /// /.provenance's lines, read from the lower file system.
    func records() throws -> [String] {
        let fs = lower.fileSystem
        let log = try fs.lookup(.root, parent: root, name: ".provenance")
        defer { fs.forget(ino: log.ino, count: 1) }
        let fh = try fs.open(.root, ino: log.ino, flags: OpenFlags.readOnly).handle
        defer { try? fs.release(.root, ino: log.ino, handle: fh) }
        var bytes = [UInt8](repeating: 0, count: Int(log.attributes.size))
        _ = try bytes.withUnsafeMutableBytes { try fs.read(.root, ino: log.ino, handle: fh, offset: 0, into: $0) }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}

func op(_ line: String) -> String { line.split(separator: " ").first { $0.hasPrefix("op=") }.map(String.init) ?? "" }

final class Lines: @unchecked Sendable {
    private var lines: [String] = []
    func append(_ line: String) { lines.append(line) }
    var all: [String] { lines }
}

@Suite struct LayerTests {
    /// The records xv6fs 2.x's own test expects, in the same words, from
    /// the layer over xv6fs 1.0.0, which records nothing by itself.
    @Test func everyKindOfChangeIsRecordedOnceOverAPlainFileSystem() throws {
        let stack = try Stack()
        let fs = stack.top
        let who = RequestContext(uid: 1000, gid: 1000, pid: 4242)
        let (e, o) = try fs.create(who, parent: root, name: "a \"quoted\" name", mode: 0o644, flags: OpenFlags.readWrite)
        _ = try ([1, 2, 3] as [UInt8]).withUnsafeBytes { try fs.write(who, ino: e.ino, handle: o.handle, offset: 0, data: $0) }
        try fs.release(who, ino: e.ino, handle: o.handle)
        _ = try fs.open(who, ino: e.ino, flags: OpenFlags.writeOnly)
        _ = try fs.setattr(who, ino: e.ino, SetAttributes(mode: 0o600), handle: nil)
        _ = try fs.link(who, ino: e.ino, newParent: root, newName: "second")
        try fs.rename(who, parent: root, name: "second", newParent: root, newName: "third", flags: [])
        try fs.unlink(who, parent: root, name: "third")
        let d = try fs.mkdir(who, parent: root, name: "dir", mode: 0o755)
        try fs.rmdir(who, parent: root, name: "dir")
        _ = try fs.open(who, ino: e.ino, flags: OpenFlags.readOnly)  // reading is not recorded
        _ = try fs.getattr(who, ino: e.ino)

        let log = try fs.lookup(.root, parent: root, name: ".provenance")
        #expect(log.attributes.mode == FileMode.regular | 0o600)
        #expect(log.attributes.uid == 0)
        let lines = try stack.records()
        #expect(lines.map(op) == ["op=create", "op=write", "op=open-write", "op=setattr", "op=link", "op=rename",
                                  "op=unlink", "op=create", "op=unlink"], "\(lines)")
        #expect(lines.allSatisfy { $0.contains(" pid=4242 uid=1000 ") })
        #expect(lines[0].contains("name=\"a \\\"quoted\\\" name\" ino=\(e.ino)"))
        #expect(lines[5].contains("name=\"second\" newparent=1 newname=\"third\" ino=\(e.ino)"))
        #expect(lines[8].contains("name=\"dir\" ino=\(d.ino)"))
        // The layer's own lookups, opens and creates are all given back.
        #expect(stack.superBlock.references.counts(log.ino).lookups == 1)
        #expect(stack.superBlock.references.size.handles == 2)  // the two opens above
        try fs.destroy()
    }

    /// A full disk: data runs out first (the reserve), records go on from
    /// the reserve, and once that is gone too the operations still succeed,
    /// are reported, and show as one gap line ahead of the next record;
    /// the pending gap travels through an upgrade of the layer.
    @Test func aFullDiskRecordsFromTheReserveThenMarksTheGap() throws {
        let reported = Lines(), logged = Lines()
        var stack = try Stack(blocks: 4096, report: { condition, error, _ in reported.append("\(condition) \(error)") },
                              log: { logged.append($0) })
        let (big, o) = try stack.top.create(.root, parent: root, name: "big", mode: 0o644, flags: OpenFlags.readWrite)
        var offset: UInt64 = 0
        for chunk in [[UInt8](repeating: 7, count: 1 << 16), [UInt8](repeating: 7, count: 4096)] {
            while let n = try? chunk.withUnsafeBytes({ try stack.top.write(.root, ino: big.ino, handle: o.handle, offset: offset, data: $0) }) {
                offset += UInt64(n)
            }
        }
        let stats = try stack.top.statfs(.root, ino: root)
        #expect(stats.availableBlocks == 0)
        #expect(stats.freeBlocks >= 60, "the reserve stays free: \(stats)")
        // Setattrs need no block: recorded from the reserve until it is gone.
        var made = 0
        for i in 0..<6000 {
            _ = try stack.top.setattr(.root, ino: big.ino, SetAttributes(mode: 0o600 | UInt32(i % 2)), handle: nil)
            made += 1
            if reported.all.count == 100 {
                // Upgrade the layer with a gap pending: the gap goes with it.
                let state = try stack.top.exportState(format: ProvenanceLayerModule.stateFormat)
                stack.top = try layer.restore(stack.superBlock, over: stack.lower, from: state)
            }
        }
        #expect(reported.all.count > 100)
        #expect(reported.all.allSatisfy { $0 == "provenance not recorded ENOSPC" })
        // Room again: the next record follows the gap line.
        _ = try stack.top.setattr(.root, ino: big.ino, SetAttributes(size: 0), handle: o.handle)
        made += 1
        let lines = try stack.records()
        let gaps = lines.filter { $0.contains(" op=gap ") }
        #expect(gaps.count == 1)
        let missed = gaps.first.flatMap { $0.split(separator: " ").first { $0.hasPrefix("ops=") } }.flatMap { Int($0.dropFirst(4)) } ?? 0
        let recordedSetattrs = lines.filter { $0.hasSuffix("op=setattr ino=\(big.ino)") }.count
        #expect(recordedSetattrs + missed == made, "\(recordedSetattrs) recorded + \(missed) missed")
        #expect(reported.all.count == missed)
        #expect(lines.allSatisfy { $0.contains(" op=") })  // every line whole
        #expect(logged.all.contains { $0.contains("\(missed) operations were not recorded") })
    }

    /// The layer below is swapped (an upgrade of xv6fs under the layer):
    /// the layer goes on over the new instance, recording into the same file.
    @Test func theLowerInstanceIsSwappedUnderTheLayer() throws {
        let stack = try Stack()
        _ = try stack.top.mkdir(.root, parent: root, name: "before", mode: 0o755)
        let next = Xv6Module(version: SemanticVersion(1, 0, 1))
        let format = try #require(plain.descriptor.handoverFormat(to: next.descriptor))
        let state = try stack.lower.fileSystem.exportState(format: format)
        stack.lower.replace(with: try next.restore(stack.superBlock, from: state), descriptor: next.descriptor)
        _ = try stack.top.mkdir(.root, parent: root, name: "after", mode: 0o755)
        let lines = try stack.records()
        #expect(lines.count == 2)
        #expect(lines[1].contains("name=\"after\""))
    }

    @Test func aMalformedStateIsRefused() throws {
        let stack = try Stack()
        for bytes in [[], [1, 2, 3], Array(repeating: 0xFF, count: 9), Array(repeating: 0, count: 10)] as [[UInt8]] {
            #expect(throws: Errno.self) {
                _ = try layer.restore(stack.superBlock, over: stack.lower,
                                      from: ExportedState(format: ProvenanceLayerModule.stateFormat, bytes: bytes))
            }
        }
        #expect(throws: Errno.self) {
            _ = try layer.restore(stack.superBlock, over: stack.lower, from: ExportedState(format: StateFormat(name: "xv6fs", version: 4), bytes: []))
        }
    }
}
