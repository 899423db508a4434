import XV6ToolSupport

MkfsCommand.runAsTool(usageStatus: 1)
