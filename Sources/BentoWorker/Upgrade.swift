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
    /// Swaps the module serving this mount for the one at `path`.
    /// `action` is .upgrade or .rollback; `quiesceTimeout` in seconds;
    /// `onPhase` hears of each phase as it ends (with the report so far),
    /// inside the pause for quiesce, export and import: it must not block.
    func upgrade(to path: String, action: UpgradeAction, quiesceTimeout: Double,
                 onPhase: (PhaseTiming, UpgradeReport) -> Void = { _, _ in }) -> UpgradeReport {
        var phases: [PhaseTiming] = []
        var report = UpgradeReport(result: UpgradeReport.refused, action: action, mountpoint: settings.mountpoint,
                                   module: path, fromVersion: "\(loaded.descriptor.version)",
                                   time: Date().formatted(.iso8601))
        let ran: Void? = upgrading.withLockIfAvailable { _ in
            report = attempt(to: path, report: report, quiesceTimeout: quiesceTimeout, phases: &phases, onPhase: onPhase)
        }
        if ran == nil { report.error = "an upgrade of \(settings.mountpoint) is already running" }
        report.phases = phases
        return report
    }

    private func attempt(to path: String, report: UpgradeReport, quiesceTimeout: Double,
                         phases: inout [PhaseTiming], onPhase: (PhaseTiming, UpgradeReport) -> Void) -> UpgradeReport {
        let old = loaded
        let action = report.action ?? .upgrade
        var report = report
        var lapStart = RequestStats.nanoseconds()
        func lap(_ phase: UpgradePhase, at now: UInt64 = RequestStats.nanoseconds()) {
            phases.append(PhaseTiming(phase: phase, micros: (now - lapStart) / 1000))
            lapStart = now
            onPhase(phases.last!, report)
        }

        // 1. Preflight: everything that can be checked while I/O flows.
        let next: LoadedModule
        do {
            next = try ModuleLoader.load(path: path, fileSystem: old.descriptor.fileSystem)
        } catch {
            report.error = "\(error)"
            lap(.preflight)
            return report
        }
        report.module = next.path
        report.toVersion = "\(next.descriptor.version)"
        // The new version reads the image's superblock now: one that cannot
        // serve it (a format feature it does not know) is refused unpaused.
        do {
            try next.module.checkCanServe(superBlock)
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
            state = try server.fileSystem.exportState(format: format)
            lap(.export)
        } catch {
            return resumeOld(after: .export, "\(old.descriptor.version) could not export its state: \(error)")
        }
        report.stateBytes = UInt64(state.bytes.count)
        report.stateFormat = "\(state.format)"
        do {
            instance = try next.module.restore(superBlock, from: state)
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
        let retired = server.fileSystem
        server.fileSystem = instance
        loaded = next
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
        return report
    }
}
