import Logging

/// The journal entries operators search for, each with its own MESSAGE_ID
/// (`journalctl MESSAGE_ID=...`); systemd/bento.catalog explains
/// each one for `journalctl -x`. The IDs are stable: scripts rely on them.
public enum Event: String, CaseIterable {
    case mountServing = "daf145a6d8c8457c81572f4f5f0e8bad"
    case mountStopped = "57c39c5a55ab4eaab108837980f565d0"
    case upgradePhase = "20efb6cc08494c4781bdd547fad276dc"
    case upgraded = "3af77a01a77f4df8a016022c80422c0d"
    case upgradeRefused = "f1001acdc62b4dc78bda30b9c54a7225"
    /// The new version failed during the upgrade; the old one serves on.
    case upgradeRolledBack = "0f1ad8c45ccd4dbc847f44b1df6291a9"
    /// `bentoctl rollback` put the previous version back.
    case rolledBack = "24d04e2b24754056870d5ae4efcd16cd"
    case upgradeInterrupted = "2428f701d036442caa57967e7235c110"
    /// Restart: the mount's state went to systemd's fd store.
    case handedOver = "18d570c3852048cb8fbaa11b449e227c"
    /// Restart: a mount taken back from the fd store, state imported.
    case adopted = "76c628d37044406a9f7ef865b89e5ca2"
    /// Crash: a mount taken back from the fd store, recovered from disk.
    case recovered = "6494d4244a9c4462a680cd1efdf398c3"
    case reloaded = "d488702aa93f4b01978e29383070648c"
    /// The watchdog found a request loop stuck and stopped answering systemd.
    case stuck = "cc16aa27839b45838a4f7a1b21d71ef3"
    /// A mount's worker process died; another takes the mount over.
    case workerDied = "5b0e8b3f6c1d4a7e9f2d8c4b1a6e3f70"
    /// A request that faulted or hung a worker is answered EIO from now on.
    case quarantined = "a3c9e1f4b7d24e0c8a6f5b2d9e1c7a48"
    /// A version on probation faulted or hung: back to the version before.
    case autoRollback = "e7d2b5a1c9f34d68b0a4e3c2f1d9b857"
    /// Requests began to fail, or to meet a failure, under some condition
    /// (a full disk, a failing device): the first occurrence. Further ones
    /// are counted (PressureLog).
    case pressureBegan = "64822f04300e4fc4a282452ab88fad03"
    /// How often it happened in the last interval.
    case pressureSummary = "c7312b3ca7bb497bb362a30397ad06f0"
    /// An interval passed without it.
    case pressureCleared = "2221c04a903f457fa2a742e65b06fa98"
}

extension Logger {
    /// Logs `message` as the journal entry `event`, with `fields` as BENTO_*
    /// journal fields.
    public func event(_ event: Event, level: Logger.Level = .info, _ message: String, _ fields: [String: String] = [:]) {
        var metadata = fields.mapValues { Logger.MetadataValue.string($0) }
        metadata["message_id"] = .string(event.rawValue)
        log(level: level, "\(message)", metadata: metadata)
    }
}
