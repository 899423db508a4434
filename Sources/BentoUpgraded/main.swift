import ArgumentParser
import Glibc
import Logging

/// bento-upgraded: serves file system modules over real FUSE mounts.
struct BentoUpgraded: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bento-upgraded",
        abstract: "Serve Bento file system modules through FUSE.",
        discussion: "Serves the mounts in the config file, or the one mount given with --image, --mountpoint and --module.")

    @Option(help: "The config file.") var config = "/etc/bento/bento.toml"
    @Option(help: "The image file or block device of a single mount (instead of the config file).") var image: String?
    @Option(help: "Where to mount it.") var mountpoint: String?
    @Option(help: "The module file (xv6fs-<version>.so).") var module: String?
    @Option(help: "Most request threads per mount.") var threads = 16
    @Option(help: "Buffer cache size per mount, in MiB.") var cacheMib = 256
    @Flag(help: "Let users other than root use the mount.") var allowOther = false

    func validate() throws {
        let given = [image, mountpoint, module].compactMap { $0 }.count
        if given != 0 && given != 3 {
            throw ValidationError("--image, --mountpoint and --module go together")
        }
    }

    func run() throws {
        let journal = JournalLogHandler.journalIsThere
        LoggingSystem.bootstrap { label -> any LogHandler in
            journal ? JournalLogHandler(label: label) : StreamLogHandler.standardError(label: label)
        }
        let log = Logger(label: "bento-upgraded")
        do {
            try Daemon(log: log).run(mounts: try mountSettings())
        } catch {
            log.critical("\(error)")
            throw ExitCode(1)
        }
    }

    func mountSettings() throws -> [ServedMount.Settings] {
        if let image, let mountpoint, let module {
            return [ServedMount.Settings(image: image, mountpoint: mountpoint, module: module, threads: threads,
                                         cacheMiB: cacheMib, allowOther: allowOther)]
        }
        throw Failure("\(config): config files are not read yet; use --image, --mountpoint and --module")
    }
}

BentoUpgraded.main()
