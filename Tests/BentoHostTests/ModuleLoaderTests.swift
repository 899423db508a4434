@_spi(Host) import BentoKit
import BentoHost
import BentoServices
import Foundation
import Testing

/// The module file as the build leaves it, loaded the way the daemon will:
/// dlopen, the entry symbol, the SDK's protocol. The tools are the real
/// mkfs.xv6 and fsck.xv6 (built by `make test` before this runs).
@Suite(.serialized) struct ModuleLoaderTests {
    static let buildDirectory: URL = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let env = ProcessInfo.processInfo.environment["BENTO_BUILD_DIR"]
        return env.map { URL(fileURLWithPath: $0) } ?? root.appendingPathComponent(".build/debug")
    }()
    static var modulePath: String { buildDirectory.appendingPathComponent("libXV6Module.so").path }
    static var module2Path: String { buildDirectory.appendingPathComponent("libXV6Module2.so").path }

    func scratch(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bento-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    @discardableResult
    func run(_ tool: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = Self.buildDirectory.appendingPathComponent(tool)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func loadsTheXv6ModuleAndServesThroughTheSDK() throws {
        #expect(FileManager.default.fileExists(atPath: Self.modulePath),
                "build the module first: swift build --product XV6Module")
        let loaded = try ModuleLoader.load(path: Self.modulePath, fileSystem: "xv6fs")
        #expect(loaded.descriptor.fileSystem == "xv6fs")
        #expect(loaded.descriptor.version == SemanticVersion(1, 0, 0))
        #expect(loaded.descriptor.sdkABIVersion == BentoABI.version)
        #expect(loaded.descriptor.handoverFormat(to: loaded.descriptor) == StateFormat(name: "xv6fs", version: 4))
        // Loading again gives the same module object.
        let again = try ModuleLoader.load(path: Self.modulePath)
        #expect(again.module === loaded.module)

        let image = scratch("loader.img")
        let mkfs = try run("mkfs.xv6", ["--force", "--size", "16M", image])
        #expect(mkfs.status == 0, "\(mkfs.output)")
        let device = try FileBlockDevice(path: image)
        let fs = try loaded.module!.mount(SuperBlock(cache: LRUBufferCache(device: device, capacity: 256)))
        let ctx = RequestContext(uid: 0, gid: 0, pid: getpid())
        let (entry, open) = try fs.create(ctx, parent: 1, name: "hello", mode: 0o644, flags: OpenFlags.readWrite)
        let text = Array("hello from a loaded module\n".utf8)
        _ = try text.withUnsafeBytes { try fs.write(ctx, ino: entry.ino, handle: open.handle, offset: 0, data: $0) }
        try fs.release(ctx, ino: entry.ino, handle: open.handle)
        fs.forget(ino: entry.ino, count: 1)
        try fs.destroy()

        let remounted = try loaded.module!.mount(SuperBlock(cache: LRUBufferCache(device: try FileBlockDevice(path: image))))
        let found = try remounted.lookup(ctx, parent: 1, name: "hello")
        var back = [UInt8](repeating: 0, count: text.count)
        let fh = try remounted.open(ctx, ino: found.ino, flags: OpenFlags.readOnly).handle
        _ = try back.withUnsafeMutableBytes { try remounted.read(ctx, ino: found.ino, handle: fh, offset: 0, into: $0) }
        #expect(back == text)
        try remounted.release(ctx, ino: found.ino, handle: fh)
        try remounted.destroy()
        let fsck = try run("fsck.xv6", ["-n", image])
        #expect(fsck.status == 0, "\(fsck.output)")
    }

    /// Versions 1 and 2 loaded side by side, and state handed from one to
    /// the other and back over one superblock, as an upgrade will.
    @Test func versionsOneAndTwoHandStateBackAndForth() throws {
        let v1 = try ModuleLoader.load(path: Self.modulePath, fileSystem: "xv6fs")
        let v2 = try ModuleLoader.load(path: Self.module2Path, fileSystem: "xv6fs")
        #expect(v2.descriptor.version == SemanticVersion(2, 0, 0))
        #expect(v1.descriptor.handoverFormat(to: v2.descriptor) == StateFormat(name: "xv6fs", version: 4))
        #expect(v2.descriptor.handoverFormat(to: v1.descriptor) == StateFormat(name: "xv6fs", version: 4))
        #expect(v2.descriptor.handoverFormat(to: v2.descriptor) == StateFormat(name: "xv6fs", version: 4))

        let image = scratch("handover.img")
        #expect(try run("mkfs.xv6", ["--force", "--size", "16M", image]).status == 0)
        let superBlock = SuperBlock(cache: LRUBufferCache(device: try FileBlockDevice(path: image)))
        let ctx = RequestContext(uid: 0, gid: 0, pid: getpid())
        let first = try v1.module!.mount(superBlock)
        let (entry, open) = try first.create(ctx, parent: 1, name: "held", mode: 0o644, flags: OpenFlags.readWrite)
        func append(_ fs: any FileSystem, _ text: String) throws {
            let size = try fs.getattr(ctx, ino: entry.ino).size
            _ = try Array(text.utf8).withUnsafeBytes { try fs.write(ctx, ino: entry.ino, handle: open.handle, offset: size, data: $0) }
        }
        try append(first, "one ")
        // Up to version 2, which records what happens from now on.
        let second = try v2.module!.restore(superBlock, from: try first.exportState(format: StateFormat(name: "xv6fs", version: 3)))
        try append(second, "two ")
        // Version 2 to version 2 keeps the recorder's state too.
        let third = try v2.module!.restore(superBlock, from: try second.exportState(format: StateFormat(name: "xv6fs", version: 4)))
        try append(third, "three ")
        // And back down to version 1, the way an earlier build would (the
        // table copied through the state).
        let fourth = try v1.module!.restore(superBlock, from: try third.exportState(format: StateFormat(name: "xv6fs", version: 1)))
        try append(fourth, "four")
        func read(_ fs: any FileSystem, _ name: FileName) throws -> String {
            let e = try fs.lookup(ctx, parent: 1, name: name)
            let fh = try fs.open(ctx, ino: e.ino, flags: OpenFlags.readOnly).handle
            var bytes = [UInt8](repeating: 0, count: Int(e.attributes.size))
            _ = try bytes.withUnsafeMutableBytes { try fs.read(ctx, ino: e.ino, handle: fh, offset: 0, into: $0) }
            try fs.release(ctx, ino: e.ino, handle: fh)
            fs.forget(ino: e.ino, count: 1)
            return String(decoding: bytes, as: UTF8.self)
        }
        #expect(try read(fourth, "held") == "one two three four")
        let records = try read(fourth, ".provenance").split(separator: "\n")
        #expect(records.count == 2, "\(records)")
        #expect(records.allSatisfy { $0.contains("pid=\(getpid()) uid=0") && $0.contains("op=write ino=\(entry.ino)") })
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        #expect(records.allSatisfy { $0.contains("exe=\"\(exe)\"") }, "\(records)")
        let attributes = try fourth.getattr(ctx, ino: try fourth.lookup(ctx, parent: 1, name: ".provenance").ino)
        #expect(attributes.mode == FileMode.regular | 0o600 && attributes.uid == 0)
        try fourth.release(ctx, ino: entry.ino, handle: open.handle)
        try fourth.destroy()
        #expect(try run("fsck.xv6", ["-n", image]).status == 0)
    }

    @Test func refusesWhatIsNotAModule() throws {
        func refusal(_ path: String, _ fileSystem: String? = nil) -> ModuleLoadError? {
            do { _ = try ModuleLoader.load(path: path, fileSystem: fileSystem); return nil } catch { return error }
        }
        #expect(refusal("/nonexistent/xv6fs-9.9.9.so") == .missing("/nonexistent/xv6fs-9.9.9.so"))
        let text = scratch("not-a-library.so")
        try "just text".write(toFile: text, atomically: true, encoding: .utf8)
        guard case .notLoadable(text, _)? = refusal(text) else { Issue.record("text file loaded"); return }
        // A real shared library, but no module.
        let plain = Self.buildDirectory.appendingPathComponent("libBentoKit.so").path
        #expect(refusal(plain) == .notAModule(plain))
        #expect(refusal(Self.modulePath, "ext4") == .wrongFileSystem(Self.modulePath, found: "xv6fs", expected: "ext4"))
        #expect(refusal(Self.modulePath, "ext4")?.description.contains(Self.modulePath) == true)
    }

    /// A stack: layers over one file system, each module of its kind,
    /// as the config and `--module` give it (top first).
    @Test func loadsAStackAndRefusesOneOfTheWrongShape() throws {
        // Loaded modules carry their resolved paths (.build/debug is a link).
        func real(_ path: String) -> String { URL(fileURLWithPath: path).resolvingSymlinksInPath().path }
        let layer = real(Self.buildDirectory.appendingPathComponent("libProvenanceModule.so").path)
        let next = real(Self.buildDirectory.appendingPathComponent("libFixtureProvenanceNext.so").path)
        let fs = real(Self.modulePath)
        let stack = try ModuleStack.load(spec: ModuleStack.spec(of: [layer, fs]))
        #expect(stack.modules.map(\.descriptor.fileSystem) == ["provenance", "xv6fs"])
        #expect(stack.top.layer != nil && stack.bottom.module != nil)
        #expect(stack.name == "provenance 1.0.0 over xv6fs 1.0.0")
        #expect(ModuleStack.paths(of: stack.spec) == [layer, fs])
        let upgraded = try ModuleLoader.load(path: next)
        #expect(stack.position(for: upgraded) == 0)
        #expect(stack.replacing(0, with: upgraded).name == "provenance 1.1.0 over xv6fs 1.0.0")
        func refusal(_ paths: [String]) -> ModuleLoadError? {
            do { _ = try ModuleStack.load(spec: ModuleStack.spec(of: paths)); return nil } catch { return error }
        }
        #expect(refusal([layer]) == .layerAtBottom(layer))
        #expect(refusal([fs, fs]) == .fileSystemAbove(fs))
        #expect(refusal([layer, next, fs]) == .sameLayerTwice("provenance"))
        #expect(refusal([layer, "/nonexistent.so", fs]) == .missing("/nonexistent.so"))
        // One module is a stack of one, its spec its path.
        #expect(try ModuleStack.load(spec: fs).spec == fs)
    }

    @Test func refusesModulesOthersCouldHaveChanged() throws {
        let dir = scratch("trust")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        let copy = dir + "/xv6fs-copy.so"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: Self.modulePath, toPath: copy)
        chmod(copy, 0o644)
        func reason() -> String? {
            do { _ = try ModuleLoader.load(path: copy); return nil } catch {
                guard case .untrusted(copy, let why) = error else { return "other refusal: \(error)" }
                return why
            }
        }
        chmod(copy, 0o664)
        #expect(reason()?.contains("writable by group or others") == true)
        chmod(copy, 0o646)
        #expect(reason()?.contains("writable by group or others") == true)
        chmod(copy, 0o644)
        chown(copy, 1000, 1000)
        #expect(reason()?.contains("owned by uid 1000") == true)
        chown(copy, 0, 0)
        chmod(dir, 0o777)
        #expect(reason()?.contains("directory \(dir) is writable") == true)
        chmod(dir, 0o755)
        chown(dir, 1000, 0)
        #expect(reason()?.contains("directory \(dir) is owned by uid 1000") == true)
        chown(dir, 0, 0)
        // Through a symlink, the target is what is checked.
        let link = dir + "/link.so"
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: copy)
        chmod(copy, 0o666)
        #expect((try? ModuleLoader.load(path: link)) == nil)
        chmod(copy, 0o644)
    }

    /// Module files whose entry record is wrong, built from C for the test.
    @Test(arguments: [("0x444F4D4F544E4542ULL", "999", "abi"), ("0x1234ULL", "1", "magic")])
    func refusesBadEntryRecords(magic: String, abi: String, name: String) throws {
        let source = scratch("bad-\(name).c"), library = scratch("bad-\(name).so")
        try """
        struct entry { unsigned long long magic; unsigned int abi; void *module; };
        static struct entry record = { \(magic), \(abi), 0 };
        const void *bento_module_entry(void) { return &record; }
        """.write(toFile: source, atomically: true, encoding: .utf8)
        let cc = Process()
        cc.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
        cc.arguments = ["-shared", "-fPIC", "-o", library, source]
        try cc.run()
        cc.waitUntilExit()
        #expect(cc.terminationStatus == 0)
        do {
            _ = try ModuleLoader.load(path: library)
            Issue.record("a bad entry record was accepted")
        } catch {
            if name == "abi" {
                #expect(error == .abiMismatch(library, found: 999, expected: BentoABI.version))
            } else {
                #expect(error == .notAModule(library))
            }
        }
    }
}
