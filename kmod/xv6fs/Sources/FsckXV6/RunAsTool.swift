import ArgumentParser
import Glibc

extension ParsableCommand {
    /// Parses and runs the command, exiting with `usageStatus` on a usage error.
    static func runAsTool(usageStatus: Int32 = 16) -> Never {
        do {
            var command = try parseAsRoot()
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

func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}
