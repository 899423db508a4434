// mount.xv6: what mount(8) runs for `mount -t xv6 IMAGE DIR -o OPTIONS`
// and for fstab lines of type xv6. It mounts nothing itself: it asks the
// running bento-upgraded, over its control socket, to serve IMAGE at DIR.
//
//   mount.xv6 IMAGE DIR [-sfnv] [-o OPTIONS] [-t TYPE]    (util-linux's helper convention)
//   mount.xv6 -V | --version
//
// OPTIONS: module=PATH (default: the newest xv6fs-*.so installed beside
// this program, in ../lib/bento/modules), threads=N, cache_mib=N,
// allow_other, writeback_cache (let the kernel cache writes), ro (serve
// read-only; rw undoes it), socket=PATH (default
// /run/bento/control.sock). Options
// that concern mount(8) or systemd (defaults, auto, noauto, nofail,
// _netdev, nosuid, nodev, x-*, comment=*) are accepted and have no effect.
// Exit status as mount(8)'s: 0 mounted, 1 wrong usage, 32 not mounted.
import BentoControl
import BentoVersion
import FoundationEssentials
import Glibc

let usage = "usage: mount.xv6 IMAGE DIR [-sfnv] [-o module=PATH,threads=N,cache_mib=N,allow_other,writeback_cache,ro,socket=PATH]"

func fail(_ message: String, status: Int32 = 32) -> Never {
    let text = Array("mount.xv6: \(message)\n".utf8)
    _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(status)
}

/// The command line, as mount(8) passes it.
struct Arguments {
    var image = ""
    var directory = ""
    var options: [String] = []
    var sloppy = false, fake = false, verbose = false

    init(_ arguments: [String]) {
        var positional: [String] = []
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            if argument == "-h" || argument == "--help" { print(usage); exit(0) }
            if argument == "-V" || argument == "--version" { print(bentoVersion); exit(0) }
            guard argument.hasPrefix("-"), argument.count > 1 else { positional.append(argument); continue }
            var letters = argument.dropFirst()
            while let letter = letters.popFirst() {
                switch letter {
                case "s": sloppy = true
                case "f": fake = true
                case "n": break  // no /etc/mtab to write: the kernel's table is the only one
                case "v": verbose = true
                case "o", "t":
                    // The value is the rest of this argument or the next one.
                    let value = letters.isEmpty ? rest.popFirst() : String(letters)
                    letters = ""
                    guard let value else { fail("-\(letter) needs a value\n\(usage)", status: 1) }
                    if letter == "o" { options += value.split(separator: ",").map(String.init) }
                default:
                    fail("unknown flag -\(letter)\n\(usage)", status: 1)
                }
            }
        }
        guard positional.count == 2 else { fail(usage, status: 1) }
        image = ControlRequest.absolute(positional[0])
        directory = ControlRequest.absolute(positional[1])
    }
}

/// What the options ask for.
struct MountOptions {
    var module: String?
    var socket = ControlProtocol.defaultSocketPath
    var threads: Int?
    var cacheMiB: Int?
    var allowOther = false
    var writebackCache = false
    var readOnly = false

    /// For mount(8), fstab or systemd: nothing to do here.
    static let ignored: Set<String> = ["defaults", "auto", "noauto", "nofail", "_netdev", "nosuid", "nodev"]

    init(_ options: [String], sloppy: Bool) {
        for option in options {
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            let (name, value) = (parts[0], parts.count > 1 ? parts[1] : nil)
            func number() -> Int {
                guard let value, let number = Int(value) else { fail("\(name)= needs a number, not '\(value ?? "")'", status: 1) }
                return number
            }
            switch name {
            case "module": module = value.map(ControlRequest.absolute)
            case "socket": socket = value.map(ControlRequest.absolute) ?? socket
            case "threads": threads = number()
            case "cache_mib": cacheMiB = number()
            case "allow_other": allowOther = true
            case "writeback_cache": writebackCache = true
            case "ro": readOnly = true
            case "rw": readOnly = false
            case _ where Self.ignored.contains(name) || name.hasPrefix("x-") || name == "comment": break
            default: if !sloppy { fail("unknown option '\(option)'\n\(usage)", status: 1) }
            }
        }
    }
}

/// The newest xv6fs-VERSION.so in PREFIX/lib/bento/modules, where `make
/// install` puts the modules beside PREFIX/sbin/mount.xv6.
func newestInstalledModule() -> String? {
    let program = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    let folder = program.deletingLastPathComponent().appendingPathComponent("../lib/bento/modules").standardizedFileURL.path
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
    func version(_ name: String) -> [Int]? {
        guard name.hasPrefix("xv6fs-"), name.hasSuffix(".so") else { return nil }
        let parts = name.dropFirst(6).dropLast(3).split(separator: ".").map { Int($0) }
        return parts.contains(nil) || parts.isEmpty ? nil : parts.compactMap { $0 }
    }
    let newest = names.compactMap { name in version(name).map { (name, $0) } }
        .max { $0.1.lexicographicallyPrecedes($1.1) }
    return newest.map { folder + "/" + $0.0 }
}

let arguments = Arguments(Array(CommandLine.arguments.dropFirst()))
let options = MountOptions(arguments.options, sloppy: arguments.sloppy)
guard let module = options.module ?? newestInstalledModule() else {
    fail("no module= given, and no xv6fs-<version>.so installed in ../lib/bento/modules beside this program")
}
if arguments.verbose {
    print("mount.xv6: asking bento-upgraded (\(options.socket)) to serve \(arguments.image) at \(arguments.directory) with \(module)")
}
if arguments.fake { exit(0) }

let request = ControlRequest.mount(image: arguments.image, mountpoint: arguments.directory, module: module,
                                   threads: options.threads, cacheMiB: options.cacheMiB, allowOther: options.allowOther,
                                   readOnly: options.readOnly, writebackCache: options.writebackCache)
let reply: ControlReply
do {
    // The daemon answers once the kernel's INIT is answered, or after a
    // mount just unmounted from the same place has flushed.
    reply = try ControlClient(path: options.socket, timeout: 300).send(request)
} catch {
    fail("\(error)")
}
guard reply.ok else { fail(reply.error ?? "bento-upgraded refused without saying why") }
if arguments.verbose, let served = reply.mounts?.first {
    print("mount.xv6: \(served.mountpoint) serves \(served.image) with \(served.module.name) \(served.module.version)")
}
