import ArgumentParser
import Glibc

/// What mkfs.xv6 and fsck.xv6 share: exit statuses of their own for usage
/// errors (fsck(8) wants 16), and plain error output.
extension ParsableCommand {
    /// Parses and runs the command, exiting with `usageStatus` on a usage error.
    public static func runAsTool(arguments: [String]? = nil, usageStatus: Int32 = 16) -> Never {
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            Glibc.exit(0)
        } catch {
            if exitCode(for: error) == .validationFailure {
                printError(fullMessage(for: error))
                Glibc.exit(usageStatus)
            }
            exit(withError: error)
        }
    }
}

public func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}
