@_spi(Host) import BentoKit
import ArgumentParser
import BentoFUSE
import BentoHost
import BentoServices
import Glibc
import Logging

/// bento-upgraded: serves a file system module over a real FUSE mount.
/// This first version serves one mount given on the command line.
struct BentoUpgraded: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bento-upgraded",
        abstract: "Serve a Bento file system module through FUSE.")

    @Option(help: "The image file or block device to serve.") var image: String
    @Option(help: "Where to mount it.") var mountpoint: String
    @Option(help: "The module file (xv6fs-<version>.so).") var module: String
    @Option(help: "Most request threads.") var threads = 16
    @Option(help: "Buffer cache size in MiB.") var cacheMib = 256
    @Flag(help: "Let users other than root use the mount.") var allowOther = false

    func run() throws {
        let journal = JournalLogHandler.journalIsThere
        LoggingSystem.bootstrap { label -> any LogHandler in
            journal ? JournalLogHandler(label: label) : StreamLogHandler.standardError(label: label)
        }
        let log = Logger(label: "bento-upgraded")
        do {
            try serve(log)
        } catch {
            log.critical("\(error)")
            throw ExitCode(1)
        }
    }

    func serve(_ log: Logger) throws {
        // Signals go to one thread that waits for them; block them everywhere first.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let loaded = try ModuleLoader.load(path: module)
        let descriptor = loaded.descriptor
        let device = try FileBlockDevice(path: image)
        let cache = LRUBufferCache(device: device, capacity: cacheMib * 256)
        let superBlock = SuperBlock(cache: cache) { message in log.info("\(message)") }
        let fileSystem: any FileSystem
        do {
            fileSystem = try loaded.module.mount(superBlock)
        } catch let error as Errno {
            throw Failure("\(image): \(descriptor.fileSystem) \(descriptor.version) cannot mount it: \(error)"
                          + (error == .EUCLEAN ? " (run fsck.xv6)" : ""))
        }
        let fd = try FuseMount.mount(at: mountpoint, source: image, type: descriptor.fileSystem, allowOther: allowOther)
        let server = FuseServer(fileSystem: fileSystem)
        do { try server.attach(fd: fd) } catch {
            FuseMount.unmount(mountpoint)
            throw error
        }
        log.info("serving \(image) at \(mountpoint) with \(descriptor.fileSystem) \(descriptor.version)")

        let mountpoint = self.mountpoint
        let waitFor = signals
        Thread.start {
            var set = waitFor
            var received: Int32 = 0
            sigwait(&set, &received)
            log.info("signal \(received): unmounting \(mountpoint)")
            server.stop()
            FuseMount.unmount(mountpoint)
        }
        // Commit what is pending every few seconds, so an idle file system
        // does not keep changes only in memory.
        Thread.start {
            while true {
                sleep(5)
                server.gate.pass { try? server.fileSystem.sync() }
            }
        }
        _ = server.run(maxThreads: threads)
        server.gate.pass { }
        do { try server.fileSystem.destroy() } catch { log.error("flushing on unmount failed: \(error)") }
        server.destroySession()
        close(fd)
        log.info("unmounted \(mountpoint)")
    }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A detached pthread running `body`.
enum Thread {
    static func start(_ body: @escaping @Sendable () -> Void) {
        final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        var thread = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        pthread_create(&thread, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        pthread_detach(thread)
    }
}

BentoUpgraded.main()
