import BentoWorker

/// What a reload changes: mounts whose settings are unchanged are left
/// alone (a different module is not a change: that is what upgrades are
/// for), mounts no longer configured or configured differently stop, and
/// mounts not served (or just stopped) start with the new settings.
struct ReloadPlan: Equatable {
    var unchanged: [String] = []
    var stop: [String] = []
    var start: [MountSettings] = []

    init(serving: [MountSettings], wanted: [MountSettings]) {
        for mount in serving {
            if let setting = wanted.first(where: { $0.mountpoint == mount.mountpoint }), setting.sameMount(as: mount) {
                unchanged.append(mount.mountpoint)
            } else {
                stop.append(mount.mountpoint)
            }
        }
        start = wanted.filter { !unchanged.contains($0.mountpoint) }
    }
}
