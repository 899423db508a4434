import ArgumentParser
import BentoControl
import BentoVersion
import FoundationEssentials
import Glibc

/// bentoctl: asks bento-upgraded over its control socket (root only).
struct Bentoctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bentoctl",
        abstract: "Control bento-upgraded: status, live upgrades, rollbacks.",
        version: bentoVersion,
        subcommands: [Status.self, Upgrade.self, Rollback.self, History.self, Reload.self])

    @OptionGroup var global: GlobalOptions
}

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The daemon's control socket.", valueName: "path"))
    var socket = ControlProtocol.defaultSocketPath
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show each mount: module, state, operations, latency.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print {\"mounts\": [...]} as JSON.") var json = false

    func run() throws {
        let reply = ask(.status, socket: global.socket, timeout: 30)
        guard reply.ok, let mounts = reply.mounts else {
            fail(reply.error ?? "bento-upgraded sent no status")
        }
        if json {
            printJSON(StatusReport(mounts: mounts))
        } else {
            print(TextReport.status(mounts), terminator: "")
        }
    }
}

struct Upgrade: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace a mount's module with a newer version, live.",
        discussion: "Exit status 0 only when the mount was upgraded.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The mount to upgrade.") var mountpoint: String
    @Argument(help: ArgumentHelp("The new module file.", valueName: "module.so")) var module: String
    @Option(help: ArgumentHelp("How long a fault or hang of the new version rolls the mount back (60s, 2m, 0 for none; "
                               + "default: the mount's probation_seconds).", valueName: "duration"))
    var probation: String?
    @Flag(help: "Also a module file that failed on probation before (clears the mark).") var force = false
    @Flag(help: "Answer once the probation has ended: upgraded, or rolled back and why.") var wait = false
    @Flag(help: "Print the outcome as a JSON object.") var json = false

    func validate() throws {
        if let probation, Duration.seconds(probation) == nil {
            throw ValidationError("--probation: a duration such as 30s, 2m, 500ms or 0, not '\(probation)'")
        }
    }

    func run() throws {
        let request = ControlRequest.upgrade(mountpoint: ControlRequest.absolute(mountpoint),
                                             module: ControlRequest.absolute(module),
                                             probationSeconds: probation.flatMap(Duration.seconds), force: force, wait: wait)
        // An upgrade drains in-flight requests before it answers, and --wait
        // waits out the probation: allow for both.
        let reply = ask(request, socket: global.socket, timeout: 300 + (wait ? 86_400 : 0))
        report(reply, action: .upgrade, json: json)
    }
}

struct Rollback: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Go back to the module version a mount served before its last upgrade.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The mount to roll back.") var mountpoint: String
    @Flag(help: "Print the outcome as a JSON object.") var json = false

    func run() throws {
        let reply = ask(.rollback(mountpoint: ControlRequest.absolute(mountpoint)), socket: global.socket, timeout: 300)
        report(reply, action: .rollback, json: json)
    }
}

struct History: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List past upgrades and rollbacks, oldest first.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Only this mount's history.") var mountpoint: String?
    @Flag(help: "Print {\"history\": [...]} as JSON.") var json = false

    struct Output: Encodable { let history: [UpgradeReport] }

    func run() throws {
        let reply = ask(.history(mountpoint: mountpoint.map(ControlRequest.absolute)), socket: global.socket, timeout: 30)
        guard reply.ok else { fail(reply.error ?? "bento-upgraded refused without saying why") }
        let entries = reply.history ?? []
        if json {
            printJSON(Output(history: entries))
        } else {
            print(TextReport.history(entries), terminator: "")
        }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-read the config file: start new mounts, stop removed ones, leave the others untouched.",
        discussion: "What `systemctl reload bento-upgraded` runs. Exit status 0 only when every new mount started.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print the outcome as a JSON object.") var json = false

    func run() throws {
        let reply = ask(.reload, socket: global.socket, timeout: 300)
        guard let changes = reply.reload else { fail(reply.error ?? "bento-upgraded refused without saying why") }
        if json {
            printJSON(changes)
        } else {
            for (what, mounts) in [("started", changes.started), ("stopped", changes.stopped), ("unchanged", changes.unchanged)]
            where !mounts.isEmpty {
                print("\(what): \(mounts.joined(separator: " "))")
            }
        }
        if !reply.ok { fail(reply.error ?? changes.failed.joined(separator: "; ")) }
    }
}

// MARK: - Helpers

/// Durations on the command line: "90", "90s", "500ms", "2m", "1h".
enum Duration {
    static func seconds(_ text: String) -> Double? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast(suffix.count)), value >= 0, value.isFinite else { return nil }
            return value * scale
        }
        guard let value = Double(text), value >= 0, value.isFinite else { return nil }
        return value
    }
}

/// The reply, or exit 1 with the reason on stderr.
func ask(_ request: ControlRequest, socket: String, timeout: Double) -> ControlReply {
    do {
        return try ControlClient(path: socket, timeout: timeout).send(request)
    } catch {
        fail(error.description)
    }
}

/// upgrade and rollback: the outcome on stdout (JSON) or as a line; exit 0
/// only when the daemon says ok.
func report(_ reply: ControlReply, action: UpgradeAction, json: Bool) {
    var outcome = reply.upgrade
        ?? UpgradeReport(result: UpgradeReport.refused, action: action, error: reply.error ?? "no reason given")
    if outcome.action == nil { outcome.action = action }
    if json {
        printJSON(outcome)
    } else if reply.ok {
        print(TextReport.upgrade(outcome), terminator: "")
    }
    guard reply.ok else {
        if reply.upgrade != nil, !json {
            printError("bentoctl: " + TextReport.upgrade(outcome))
            exit(1)
        }
        fail(reply.error ?? outcome.error ?? "\(action.rawValue) failed: \(outcome.result.rawValue)")
    }
}

func printJSON(_ value: some Encodable) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(value) else { fail("cannot encode the reply as JSON") }
    print(String(decoding: data, as: UTF8.self))
}

func fail(_ message: String) -> Never {
    printError("bentoctl: \(message)\n")
    exit(1)
}

/// Straight to descriptor 2, unbuffered.
func printError(_ text: String) {
    var text = text
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

Bentoctl.main()
