import BentoControl
import BentoFUSE
import BentoHost
import BentoKit
import FoundationEssentials
import Glibc

/// Live upgrade of one mount, in the phases of Docs/upgrade.md: preflight
/// with I/O flowing, quiesce (gate closed, in-flight requests drained),
/// export the old instance's state, import it into the new one, resume.
/// Any failure before the swap leaves the old instance serving.
extension ServedMount {
    /// Swaps the module serving this mount for the one at `path`; in a
    /// stack, the module of the same name (`position`), the others left
    /// serving. `path` may also be a stack's spec that differs from the
    /// one serving in one module (a rollback to what served before).
    /// `action` is .upgrade or .rollback; `quiesceTimeout` in seconds;
    /// `onPhase` hears of each phase as it ends (with the report so far),
    /// inside the pause for quiesce, export and import: it must not block.
    func upgrade(to path: String, action: UpgradeAction, quiesceTimeout: Double,
                 onPhase: (PhaseTiming, UpgradeReport) -> Void = { _, _ in }) -> UpgradeReport {
        var phases: [PhaseTiming] = []
        var report = UpgradeReport(result: UpgradeReport.refused, action: action, mountpoint: settings.mountpoint,
                                   module: path, fromVersion: "\(stack.top.descriptor.version)",
                                   time: Date().formatted(.iso8601))
        let ran: Void? = upgrading.withLockIfAvailable {
            report = attempt(to: path, report: report, quiesceTimeout: quiesceTimeout, phases: &phases, onPhase: onPhase)
        }
        if ran == nil { report.error = "an upgrade of \(settings.mountpoint) is already running" }
        report.phases = phases
        return report
    }

    private func attempt(to path: String, report: UpgradeReport, quiesceTimeout: Double,
                         phases: inout [PhaseTiming], onPhase: (PhaseTiming, UpgradeReport) -> Void) -> UpgradeReport {
        let modules = stack
        let action = report.action ?? .upgrade
        var report = report
        var lapStart = RequestStats.nanoseconds()
        func lap(_ phase: UpgradePhase, at now: UInt64 = RequestStats.nanoseconds()) {
            phases.append(PhaseTiming(phase: phase, micros: (now - lapStart) / 1000))
            lapStart = now
            onPhase(phases.last!, report)
        }

        // 1. Preflight: everything that can be checked while I/O flows.
        let next: LoadedModule, index: Int
        do {
            (next, index) = try replacement(path, in: modules)
        } catch {
            report.error = "\(error)"
            lap(.preflight)
            return report
        }
        let old = modules.modules[index]
        report.module = next.path
        report.fromVersion = "\(old.descriptor.version)"
        report.toVersion = "\(next.descriptor.version)"
        if modules.modules.count > 1 { report.layer = old.descriptor.fileSystem }
        // The new version reads the image's superblock now: one that cannot
        // serve it (a format feature it does not know) is refused unpaused.
        do {
            try next.module?.checkCanServe(superBlock)
        } catch {
            report.error = "\(next.descriptor.fileSystem) \(next.descriptor.version) cannot serve \(settings.image): \(error)"
            lap(.preflight)
            return report
        }
        guard let format = old.descriptor.handoverFormat(to: next.descriptor) else {
            report.error = "no common state format: \(old.descriptor.version) exports "
                + "\(old.descriptor.exportFormats.map(\.description)), \(next.descriptor.version) imports "
                + "\(next.descriptor.importFormats.map(\.description))"
            lap(.preflight)
            return report
        }
        lap(.preflight)

        // 2. Quiesce.
        let closed = RequestStats.nanoseconds()
        guard server.gate.close(timeoutNanoseconds: UInt64(quiesceTimeout * 1e9)) else {
            lap(.quiesce)
            report.error = "requests still running after the \(Int(quiesceTimeout * 1000)) ms quiesce deadline: "
                + "upgrade aborted, I/O resumed"
            return report
        }
        lap(.quiesce)

        // 3. Export. 4. Import. A failure in either: the old instance,
        // which still owns its state, resumes.
        func resumeOld(after phase: UpgradePhase, _ why: String) -> UpgradeReport {
            let opened = server.gate.reopen()
            lap(phase, at: opened)
            report.result = action == .upgrade ? UpgradeReport.rolledBack : UpgradeReport.refused
            report.error = why
            report.pauseMicros = (opened - closed) / 1000
            return report
        }
        let state: ExportedState
        let instance: any FileSystem
        let references = superBlock.references
        let copiesBefore = references.copies
        do {
            state = try served.instances[index].exportState(format: format)
            lap(.export)
        } catch {
            return resumeOld(after: .export, "\(old.descriptor.version) could not export its state: \(error)")
        }
        report.stateBytes = UInt64(state.bytes.count)
        report.stateFormat = "\(state.format)"
        do {
            instance = try served.restore(index, next, superBlock: superBlock, from: state)
            lap(.`import`)
        } catch {
            return resumeOld(after: .`import`, "\(next.descriptor.version) failed to import the state (\(format)): \(error); "
                + "\(old.descriptor.version) serves on from the same state")
        }

        // 5. Resume on the new instance. What the kernel cached came from
        // the old version: names go now (one notification), attributes
        // right after the gate reopens (one per inode the kernel holds:
        // they grow with the state). The old instance is let go after that
        // too: freeing what it cached (an inode object per inode the kernel
        // holds) grows with the state.
        let retired = served.instances[index]
        served.replace(index, with: next, instance: instance)
        if index == 0 { server.fileSystem = instance }
        stack = served.stack
        server.forgetCachedNames()
        let opened = server.gate.reopen()
        lap(.resume, at: opened)
        report.pauseMicros = (opened - closed) / 1000
        server.forgetCachedAttributes(of: references.heldInodes)
        withExtendedLifetime(retired) {}
        let held = references.size
        report.heldInodes = UInt64(held.inodes)
        report.heldHandles = UInt64(held.handles)
        report.tableCopied = references.copies != copiesBefore
        report.result = action == .upgrade ? UpgradeReport.upgraded : UpgradeReport.rolledBack
        // What the supervisor records as serving: for a stack, all of it.
        if modules.modules.count > 1 { report.module = served.stack.spec }
        return report
    }

    /// The module `path` puts in, and its position in `modules`: the
    /// module of the same name, which must be of the same kind (a layer
    /// for a layer). A stack's spec names the one module it changes.
    private func replacement(_ path: String, in modules: ModuleStack) throws -> (LoadedModule, Int) {
        guard modules.modules.count > 1 else {
            return (try ModuleLoader.load(path: path, fileSystem: modules.bottom.descriptor.fileSystem), 0)
        }
        var file = path
        let paths = ModuleStack.paths(of: path)
        if paths.count > 1 {
            let changed = zip(paths, modules.modules).filter { $0.0 != $0.1.path }.map(\.0)
            guard paths.count == modules.modules.count, changed.count == 1 else {
                throw Failure("\(ModuleStack.describe(path)) differs from \(ModuleStack.describe(modules.spec)) in "
                              + "\(paths.count == modules.modules.count ? "\(changed.count)" : "the number of") modules: "
                              + "an upgrade replaces one")
            }
            file = changed[0]
        }
        let next = try ModuleLoader.load(path: file)
        guard let index = modules.position(for: next) else {
            throw Failure("\(next.path): serves \"\(next.descriptor.fileSystem)\", which is none of the stack's "
                          + modules.modules.map { "\"\($0.descriptor.fileSystem)\"" }.joined(separator: ", "))
        }
        guard (next.layer == nil) == (modules.modules[index].layer == nil) else {
            throw Failure(next.layer == nil ? ModuleLoadError.fileSystemAbove(next.path).description
                                            : ModuleLoadError.layerAtBottom(next.path).description)
        }
        return (next, index)
    }
}
