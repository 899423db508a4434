@_spi(Host) import BentoKit
import Testing
import XV6FS
import XV6Layout

/// A plain in-memory file tree: what the file system should look like.
final class ModelNode {
    enum Kind { case file, directory, symlink }
    let kind: Kind
    var data: [UInt8] = []
    var children: [String: ModelNode] = [:]
    var nlink: Int
    init(_ kind: Kind) { self.kind = kind; nlink = kind == .directory ? 2 : 1 }
}

/// Random operations, run against the module and against the model side by
/// side: every result (data or errno) and the final trees must agree.
@Suite struct ModelTests {
    static let names = ["a", "b", "c", "dd", "e"]

    struct Run {
        var h: Harness
        let model = ModelNode(.directory)
        var rng: SeededGenerator
        let seed: UInt64
        var step = 0
        var succeeded = 0

        init(seed: UInt64) throws {
            self.seed = seed
            rng = SeededGenerator(seed: seed)
            h = try Harness.fresh(blocks: 4096, inodes: 512)
        }

        func where_() -> Comment { "seed \(seed), step \(step)" }

        /// Every path in the model, with its node.
        func all(_ node: ModelNode, _ path: String, into out: inout [(String, ModelNode)]) {
            out.append((path, node))
            for (name, child) in node.children {
                let p = path.isEmpty ? name : path + "/" + name
                if child.kind == .directory { all(child, p, into: &out) } else { out.append((p, child)) }
            }
        }

        func paths() -> [(String, ModelNode)] {
            var out: [(String, ModelNode)] = []
            all(model, "", into: &out)
            return out
        }

        func node(_ path: String) -> ModelNode? {
            var n = model
            for part in path.split(separator: "/") {
                guard let next = n.children[String(part)] else { return nil }
                n = next
            }
            return n
        }

        mutating func pickDirectory() -> String {
            let dirs = paths().filter { $0.1.kind == .directory }.map(\.0)
            return dirs.randomElement(using: &rng)!
        }

        mutating func pickPath() -> String {
            let dir = pickDirectory()
            let name = ModelTests.names.randomElement(using: &rng)!
            return dir.isEmpty ? name : dir + "/" + name
        }

        func parentOf(_ path: String) -> (ModelNode, String) {
            var parts = path.split(separator: "/").map(String.init)
            let last = parts.removeLast()
            return (node(parts.joined(separator: "/"))!, last)
        }

        /// Checks the module's errno against the model's.
        func agree(_ expected: Errno?, _ body: () throws -> Void) -> Bool {
            let got = errno(body)
            #expect(got == expected, where_())
            return got == nil
        }

        mutating func stepOnce() throws {
            step += 1
            let path = pickPath()
            let (parent, name) = parentOf(path)
            let existing = parent.children[name]
            let (dirIno, fname) = try h.parent(path)
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<14:  // create
                let expected: Errno? = existing != nil ? .EEXIST : nil
                if agree(expected, {
                    let (e, o) = try h.fs.create(ctx, parent: dirIno, name: fname, mode: 0o644, flags: OpenFlags.readWrite)
                    try h.fs.release(ctx, ino: e.ino, handle: o.handle)
                    h.fs.forget(ino: e.ino, count: 1)
                }) { parent.children[name] = ModelNode(.file) }
            case 14..<22:  // mkdir
                let expected: Errno? = existing != nil ? .EEXIST : nil
                if agree(expected, { _ = try h.mkdir(path) }) {
                    parent.children[name] = ModelNode(.directory)
                    parent.nlink += 1
                }
            case 22..<40:  // write
                guard let n = existing, n.kind == .file else { return }
                let offset = Int.random(in: 0...(Bool.random(using: &rng) ? 70_000 : 300_000), using: &rng)
                let data = pattern(Int.random(in: 1...20_000, using: &rng), seed: rng.next())
                try h.writeFile(path, data, at: UInt64(offset), create: false)
                if n.data.count < offset + data.count { n.data += [UInt8](repeating: 0, count: offset + data.count - n.data.count) }
                n.data.replaceSubrange(offset..<offset + data.count, with: data)
            case 40..<46:  // truncate
                guard let n = existing, n.kind == .file else { return }
                let size = Int.random(in: 0...120_000, using: &rng)
                _ = try h.fs.setattr(ctx, ino: try h.resolve(path), SetAttributes(size: UInt64(size)), handle: nil)
                if size < n.data.count { n.data.removeSubrange(size...) } else { n.data += [UInt8](repeating: 0, count: size - n.data.count) }
            case 46..<54:  // read and stat
                guard let n = existing else {
                    #expect(errno { _ = try h.resolve(path) } == .ENOENT, where_())
                    return
                }
                let ino = try h.resolve(path)
                let attr = try h.fs.getattr(ctx, ino: ino)
                #expect(Int(attr.nlink) == n.nlink, where_())
                if n.kind == .file {
                    #expect(try h.readFile(ino) == n.data, where_())
                } else if n.kind == .symlink {
                    #expect(try h.fs.readlink(ctx, ino: ino) == n.data, where_())
                }
            case 54..<64:  // unlink
                let expected: Errno? = existing == nil ? .ENOENT : existing!.kind == .directory ? .EISDIR : nil
                if agree(expected, { try h.fs.unlink(ctx, parent: dirIno, name: fname) }) {
                    existing!.nlink -= 1
                    parent.children[name] = nil
                }
            case 64..<70:  // rmdir
                let expected: Errno? = existing == nil ? .ENOENT : existing!.kind != .directory ? .ENOTDIR
                    : !existing!.children.isEmpty ? .ENOTEMPTY : nil
                if agree(expected, { try h.fs.rmdir(ctx, parent: dirIno, name: fname) }) {
                    parent.children[name] = nil
                    parent.nlink -= 1
                }
            case 70..<82:  // rename
                let to = pickPath()
                try rename(path, to)
            case 82..<88:  // link
                let to = pickPath()
                let (toParent, toName) = parentOf(to)
                let expected: Errno? = existing == nil ? .ENOENT : existing!.kind == .directory ? .EPERM
                    : toParent.children[toName] != nil ? .EEXIST : nil
                let (toDir, toFname) = try h.parent(to)
                if agree(expected, {
                    let ino = try h.resolve(path)
                    let e = try h.fs.link(ctx, ino: ino, newParent: toDir, newName: toFname)
                    h.fs.forget(ino: e.ino, count: 1)
                }) {
                    existing!.nlink += 1
                    toParent.children[toName] = existing
                }
            case 88..<93:  // symlink
                let target = Array("target-\(step)".utf8)
                let expected: Errno? = existing != nil ? .EEXIST : nil
                if agree(expected, {
                    let e = try h.fs.symlink(ctx, parent: dirIno, name: fname, target: target)
                    h.fs.forget(ino: e.ino, count: 1)
                }) {
                    let n = ModelNode(.symlink)
                    n.data = target
                    parent.children[name] = n
                }
            case 93..<97:
                try h.fs.fsync(ctx, ino: root, handle: 0, dataOnly: false)
            default:
                h = try h.remount()
            }
        }

        func isWithin(_ candidate: ModelNode, _ ancestor: ModelNode) -> Bool {
            if candidate === ancestor { return true }
            return ancestor.children.values.contains { $0.kind == .directory && isWithin(candidate, $0) }
        }

        mutating func rename(_ from: String, _ to: String) throws {
            let (fromParent, fromName) = parentOf(from)
            let (toParent, toName) = parentOf(to)
            let source = fromParent.children[fromName]
            let target = toParent.children[toName]
            var expected: Errno?
            if source == nil { expected = .ENOENT }
            else if let t = target, t === source { expected = nil }
            else if source!.kind == .directory && isWithin(toParent, source!) { expected = .EINVAL }
            else if let t = target {
                if source!.kind == .directory {
                    expected = t.kind != .directory ? .ENOTDIR : !t.children.isEmpty ? .ENOTEMPTY : nil
                } else if t.kind == .directory { expected = .EISDIR }
            }
            let (fromDir, fromFname) = try h.parent(from)
            let (toDir, toFname) = try h.parent(to)
            guard agree(expected, {
                try h.fs.rename(ctx, parent: fromDir, name: fromFname, newParent: toDir, newName: toFname, flags: [])
            }) else { return }
            guard let s = source, target !== s else { return }
            if let t = target {
                t.nlink -= 1
                if t.kind == .directory { toParent.nlink -= 1; t.nlink = 0 }
            }
            fromParent.children[fromName] = nil
            toParent.children[toName] = s
            if s.kind == .directory && fromParent !== toParent { fromParent.nlink -= 1; toParent.nlink += 1 }
        }

        /// Walks both trees and compares names, kinds, link counts and contents.
        func compare(_ node: ModelNode, _ ino: InodeNumber, _ path: String) throws {
            let attr = try h.fs.getattr(ctx, ino: ino)
            #expect(Int(attr.nlink) == node.nlink, "seed \(seed): nlink of /\(path)")
            switch node.kind {
            case .file:
                #expect(attr.mode & FileMode.typeMask == FileMode.regular, "seed \(seed): /\(path)")
                #expect(try h.readFile(ino) == node.data, "seed \(seed): contents of /\(path)")
            case .symlink:
                #expect(try h.fs.readlink(ctx, ino: ino) == node.data, "seed \(seed): /\(path)")
            case .directory:
                #expect(Set(try h.list(ino, batch: 3)) == Set(node.children.keys), "seed \(seed): entries of /\(path)")
                for (name, child) in node.children {
                    let e = try h.fs.lookup(ctx, parent: ino, name: FileName(name))
                    h.fs.forget(ino: e.ino, count: 1)
                    try compare(child, e.ino, path.isEmpty ? name : path + "/" + name)
                }
            }
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6] as [UInt64])
    func randomOperationsMatchTheModel(seed: UInt64) throws {
        var run = try Run(seed: seed)
        for _ in 0..<3000 { try run.stepOnce() }
        // The run must have changed the tree, not only hit errors.
        #expect(run.paths().count > 20, "seed \(seed)")
        try run.compare(run.model, root, "")
        run.h = try run.h.remount()
        try run.compare(run.model, root, "")
        try run.h.fs.destroy()
        try expectClean(run.h.device, "seed \(seed)")
    }
}
