import XV6ToolSupport
import ArgumentParser
import BentoServices
import BentoVersion
import Glibc
import XV6Check

/// fsck.xv6: checks an xv6 image and, unless -n, repairs what it safely can.
struct FsckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck.xv6",
        abstract: "Check and repair an xv6 file system.",
        discussion: """
            Prints one line per finding and a summary. Without -n, replays a committed \
            log transaction and fixes the free bitmap, link counts and inode block counts; \
            other damage is reported and left alone.

            Exit status, as fsck(8), added up when several apply: 0 clean, 1 errors \
            corrected, 4 errors left uncorrected, 8 operational error, 16 usage error.
            """,
        version: bentoVersion)

    @Flag(name: .customShort("n"), help: "Check only: open the image read-only and change nothing.")
    var noChanges = false

    @Flag(name: .customShort("y"), help: "Repair what can be repaired (the default).")
    var yes = false

    @Flag(name: .customShort("f"), help: "Accepted for compatibility: every run is a full check.")
    var force = false

    @Argument(help: "The image file or block device.")
    var image: String

    func validate() throws {
        if noChanges && yes { throw ValidationError("-n and -y cannot be used together") }
    }

    func run() throws {
        let device: FileBlockDevice
        do {
            device = try FileBlockDevice(path: image, readOnly: noChanges)
        } catch {
            printError("fsck.xv6: \(error)")
            throw ExitCode(8)
        }
        let report = Checker(readOnly: noChanges).check(device)
        if let problem = report.operationalError {
            printError("fsck.xv6: \(image): \(problem)")
            throw ExitCode(8)
        }
        for finding in report.findings { print(finding) }
        print("\(image): \(report.summary)")
        throw ExitCode(report.exitCode)
    }
}
