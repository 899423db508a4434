import XV6ToolSupport

FsckCommand.runAsTool(arguments: ProgressOption.normalized(Array(CommandLine.arguments.dropFirst())))
