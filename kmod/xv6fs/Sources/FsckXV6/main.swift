import XV6ToolSupport

FsckCommand.runAsTool()
