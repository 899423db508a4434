FsckCommand.runAsTool()
