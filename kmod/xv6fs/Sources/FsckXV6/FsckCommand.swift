import XV6ToolSupport
import ArgumentParser
import BentoServices
import BentoVersion
import Glibc
import XV6Check
import XV6Layout

/// fsck.xv6: checks an xv6 image and, unless -n, repairs what it safely can.
struct FsckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck.xv6",
        abstract: "Check and repair an xv6 file system.",
        usage: "fsck.xv6 [-n | -y | -p | -a] [-f] [-C [fd]] [--downgrade FEATURE[,FEATURE...]] IMAGE",
        discussion: """
            Prints one line per finding and a summary. Without -n, replays a committed \
            log transaction and fixes the free bitmap, link counts and inode block counts; \
            other damage is reported and left alone. With -p or -a (preen, as at boot, or \
            `fsck -A`) it repairs only if every error found is one of those, and otherwise \
            changes nothing and asks for a run by hand.

            An image that bento-upgraded serves, or that is mounted, is never repaired \
            (exit status 8); -n still checks it, warning that what it reads may change \
            while it reads. While repairing, fsck.xv6 holds the image's lock, so \
            bento-upgraded and mkfs.xv6 leave it alone.

            -C fd writes e2fsck's progress lines to the fd: "pass current total IMAGE" \
            (passes 1 inodes, 2 directories, 3 connectivity, 4 link counts, 5 bitmap); \
            -C 0, or -C alone, draws a progress bar on standard output.

            Exit status, as fsck(8), added up when several apply: 0 clean, 1 errors \
            corrected, 4 errors left uncorrected, 8 operational error (cannot check, or \
            the image is in use), 16 usage error.

            The report names the image's format features. An image with an incompat \
            feature fsck.xv6 does not know is not checked (exit status 8); one with an \
            unknown ro_compat feature is checked only with -n.

            --downgrade checks and repairs first, then removes the named features \
            (e.g. xattr) from the superblock, so that a version that does not know them \
            serves the image again. It refuses, changing nothing more, while an error is \
            left or while some file still uses a feature (an extended attribute, a file \
            past 4 GiB, preallocated blocks); the exit status is then 8.
            """,
        version: bentoVersion)

    @Flag(name: .customShort("n"), help: "Check only: open the image read-only and change nothing.")
    var noChanges = false

    @Flag(name: .customShort("y"), help: "Repair what can be repaired (the default).")
    var yes = false

    @Flag(name: .customShort("p"), help: "Preen: repair only what is safe without asking; exit 4 if a person must decide.")
    var preen = false

    @Flag(name: .customShort("a"), help: "The same as -p (for compatibility).")
    var automatic = false

    @Flag(name: .customShort("f"), help: "Accepted for compatibility: every run is a full check.")
    var force = false

    @Option(name: .customShort("C", allowingJoined: true),
            help: ArgumentHelp("Progress: completion lines to fd, or a bar on standard output if 0 or none.",
                               valueName: "fd"))
    var progressFD: Int32?

    @Option(name: .customLong("downgrade"),
            help: ArgumentHelp("Remove these features once no file uses them (after the repairs).",
                               valueName: "feature,..."))
    var downgrade: String?

    @Argument(help: "The image file or block device.")
    var image: String

    var preening: Bool { preen || automatic }

    func validate() throws {
        if [noChanges, yes, preening].filter({ $0 }).count > 1 {
            throw ValidationError("only one of -n, -y and -p/-a may be given")
        }
        if let progressFD, progressFD < 0 { throw ValidationError("-C needs a file descriptor number") }
        if downgrade != nil && (noChanges || preening) { throw ValidationError("--downgrade changes the image: not with -n, -p or -a") }
        _ = try downgradeFeatures()
    }

    /// The features --downgrade names (mkfs's -O list parser).
    func downgradeFeatures() throws -> FeatureSet {
        guard let downgrade else { return .none }
        do { return try FeatureSet.none.applying(downgrade) } catch { throw ValidationError("--downgrade: \(error)") }
    }

    func run() throws {
        try holdImage()
        checkAndExit()
    }

    /// Repairing: the image locked until exit, or exit 8 if it is in use.
    /// With -n: nothing held, and a warning if it is in use.
    private func holdImage() throws {
        if noChanges {
            let use = ImageUse.of(image)
            if use.inUse {
                printError("fsck.xv6: warning: \(use.description); it may change while this check reads it, "
                           + "so what it finds may be stale")
            }
            return
        }
        do {
            try ImageHold.take(image)
        } catch {
            if case .inUse = error {
                printError("fsck.xv6: \(error); not repairing it (stop serving or unmount it first, "
                           + "or check it read-only with -n)")
            } else {
                printError("fsck.xv6: \(error)")
            }
            throw ExitCode(8)
        }
    }

    private func checkAndExit() -> Never {
        let progress = progressFD.map { ProgressOutput(fd: $0, device: image) }
        let device: FileBlockDevice
        do {
            device = try FileBlockDevice(path: image, readOnly: noChanges)
        } catch {
            printError("fsck.xv6: \(error)")
            Glibc.exit(8)
        }
        var checker = Checker(readOnly: noChanges)
        if let progress { checker.progress = { progress.show($0) } }

        if preening {
            // A read-only look first: repair only if every error is safe.
            var dryRun = checker
            dryRun.readOnly = true
            let first = dryRun.check(device)
            progress?.finish()
            let unsafe = Preen.needsPerson(first)
            if first.operationalError == nil && !unsafe.isEmpty { finish(first, preenHalt: unsafe) }
            if first.operationalError == nil && first.isClean && !first.has(.log) { finish(first) }
        }
        let report = checker.check(device)
        progress?.finish()
        if downgrade != nil { lowerFeatures(report, device) }
        finish(report)
    }

    /// --downgrade: the named features out of the superblock, once the check
    /// left no error and no file uses them; or exit 8, saying why.
    private func lowerFeatures(_ report: CheckReport, _ device: FileBlockDevice) {
        guard let superblock = report.superblock, report.operationalError == nil else { return }
        let asked = (try? downgradeFeatures()) ?? .none
        let set = asked.intersection(superblock.features)
        let used = set.intersection(report.featuresInUse)
        var why: String?
        if report.errorsLeft > 0 { why = "errors are left" }
        else if !used.isEmpty { why = "files still use \(used.description)" }
        if let why {
            for finding in report.findings { print(finding) }
            print("\(image): \(report.summary)")
            printError("fsck.xv6: \(image): not removing \(set.description): \(why)")
            Glibc.exit(8)
        }
        guard !set.isEmpty else {
            print("\(image): --downgrade: the image does not use \(asked.description): nothing to remove")
            return
        }
        do {
            try Downgrade.remove(set, from: device, superblock: superblock)
        } catch {
            printError("fsck.xv6: \(image): removing \(set.description) failed: \(error)")
            Glibc.exit(8)
        }
        print("\(image): removed features: \(set.description); features now: "
              + superblock.features.subtracting(set).description)
    }

    /// Prints the findings and the summary, and exits with fsck(8)'s status.
    private func finish(_ report: CheckReport, preenHalt unsafe: Set<FindingKind> = []) -> Never {
        if let superblock = report.superblock { print("\(image): features: \(superblock.features.description)") }
        if let problem = report.operationalError {
            printError("fsck.xv6: \(image): \(problem)")
            Glibc.exit(8)
        }
        for finding in report.findings { print(finding) }
        print("\(image): \(report.summary)")
        guard unsafe.isEmpty else {
            let kinds = unsafe.map(\.rawValue).sorted().joined(separator: ", ")
            print("\(image): UNEXPECTED INCONSISTENCY (\(kinds)); RUN fsck.xv6 MANUALLY (without -a or -p). "
                  + "Nothing was changed.")
            Glibc.exit(4)
        }
        Glibc.exit(report.exitCode)
    }
}

