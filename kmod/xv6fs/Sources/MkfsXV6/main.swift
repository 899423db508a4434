MkfsCommand.runAsTool(usageStatus: 1)
