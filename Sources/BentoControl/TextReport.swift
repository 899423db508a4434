/// Replies as bentoctl prints them for people (`--json` prints the objects instead).
public enum TextReport {
    /// How many operation kinds `status` names after the total.
    public static let topOperations = 5

    /// One small table per mount:
    ///
    ///     /mnt/bento
    ///       layer     provenance 1.0.0  (/usr/local/lib/bento/modules/provenance-1.0.0.so)   (stacks only)
    ///       module    xv6fs 1.0.0  (/usr/local/lib/bento/modules/xv6fs-1.0.0.so)
    ///       image     /var/lib/bento/bento.img (read-only)
    ///       state     serving, up 2h 03m, on probation for 42s, 1 request quarantined
    ///       ops       12345 total: getattr 5000, lookup 4000, read 2000, write 1000, open 345
    ///       latency   p50 12 µs  p90 40 µs  p99 310 µs  max 2.1 ms
    ///       kernel    holds 1200 inodes, 35 open handles; caches names and attributes for 1d 0h, and writes (writeback cache)
    ///       cache     12.3 MiB of 256.0 MiB, 120.0 KiB dirty, 97.1% hits; worker 45.2 MiB resident, peak 60.1 MiB
    ///       pressure  requests failed (ENOSPC) 12345, last 3s ago
    ///                 provenance not recorded (ENOSPC) 12000, last 3s ago
    public static func status(_ mounts: [MountStatus]) -> String {
        guard !mounts.isEmpty else { return "no mounts\n" }
        return mounts.map { mount in
            let total = mount.operations.values.reduce(0, +)
            let top = mount.operations.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .prefix(topOperations).map { "\($0.key) \($0.value)" }
            let latency = mount.latencyMicros
            let probation = mount.probation.map { ", on probation for \(duration(seconds: $0.secondsLeft))" } ?? ""
            let quarantined = mount.quarantined.map { ", \($0) request\($0 == 1 ? "" : "s") quarantined" } ?? ""
            let writes = mount.kernelCachesWrites == true ? ", and writes (writeback cache)" : ""
            let direct = mount.writeOnlyPastPageCache == true ? "; write-only handles write past its page cache" : ""
            let caches = mount.kernelCacheSeconds.map { "; caches names and attributes for \(duration(seconds: $0))\(writes)\(direct)" } ?? ""
            let held = mount.heldInodes.map { inodes in
                "\n  kernel    holds \(inodes) inodes, \(mount.heldHandles ?? 0) open handles\(caches)"
            } ?? ""
            var memory = ""
            if let cache = mount.cache {
                let rate = cache.hitRate.map { "\(fixed($0 * 100, 1))% hits" } ?? "no lookups yet"
                memory = "\n  cache     \(bytes(cache.cachedBytes)) of \(bytes(cache.capacityBytes)), \(bytes(cache.dirtyBytes)) dirty, \(rate)"
                if cache.allocatedBytes > cache.capacityBytes { memory += " (holds \(bytes(cache.allocatedBytes)): all dirty or pinned)" }
            }
            if let resident = mount.residentBytes {
                memory += "\(memory.isEmpty ? "\n  memory    " : "; ")worker \(bytes(resident)) resident"
                    + (mount.peakResidentBytes.map { ", peak \(bytes($0))" } ?? "")
            }
            let pressure = (mount.pressure ?? []).filter { $0.count > 0 }.enumerated().map { i, counted in
                (i == 0 ? "\n  pressure  " : "\n            ")
                    + "\(counted.condition) (\(counted.error)) \(counted.count), last \(duration(seconds: counted.lastSecondsAgo)) ago"
            }.joined()
            let layers = (mount.layers ?? []).map { "\n  layer     \($0.name) \($0.version)  (\($0.path))" }.joined()
            return """
                \(mount.mountpoint)\(layers)
                  module    \(mount.module.name) \(mount.module.version)  (\(mount.module.path))
                  image     \(mount.image)\(mount.readOnly == true ? " (read-only)" : "")
                  state     \(mount.state.rawValue), up \(duration(seconds: mount.uptimeSeconds))\(probation)\(quarantined)
                  ops       \(total) total\(top.isEmpty ? "" : ": " + top.joined(separator: ", "))
                  latency   p50 \(micros(latency.p50))  p90 \(micros(latency.p90))  p99 \(micros(latency.p99))  max \(micros(latency.max))\(held)\(memory)\(pressure)

                """
        }.joined(separator: "\n")
    }

    /// One line, worded by outcome:
    ///
    ///     upgraded /mnt/bento: 1.0.0 -> 2.0.0, paused 12.3 ms, state 4.0 KiB
    ///     upgrade of /mnt/bento to 2.0.0 rolled back, still 1.0.0, paused 900 µs (import failed: ...)
    ///     rolled back /mnt/bento: 2.0.0 -> 1.0.0, paused 1.1 ms
    ///     upgrade of /mnt/bento refused (module ABI 2, this daemon speaks 1)
    public static func upgrade(_ report: UpgradeReport) -> String {
        let action = report.action ?? .upgrade
        let mount = (report.mountpoint.map { " " + $0 } ?? "") + (report.layer.map { " (layer \($0))" } ?? "")
        var versions = ""
        switch (report.fromVersion, report.toVersion) {
        case let (from?, to?): versions = ": \(from) -> \(to)"
        case let (from?, nil): versions = ": \(from)"
        case let (nil, to?): versions = ": -> \(to)"
        case (nil, nil): break
        }
        var line: String
        switch (report.result, action) {
        case (.upgraded, _):
            line = "upgraded" + mount + versions
        case (.rolledBack, .rollback):
            line = "rolled back" + mount + versions
        case (.rolledBack, .autoRollback):
            line = "rolled back automatically" + mount + versions
        case (.rolledBack, .upgrade):
            line = "upgrade" + (mount.isEmpty ? "" : " of" + mount) + (report.toVersion.map { " to " + $0 } ?? "")
                + " rolled back" + (report.fromVersion.map { ", still " + $0 } ?? "")
        case (.refused, _):
            line = action.rawValue + (mount.isEmpty ? "" : " of" + mount) + " refused"
        }
        if let pause = report.pauseMicros { line += ", paused \(micros(pause))" }
        if let state = report.stateBytes { line += ", state \(bytes(state))" + (report.stateFormat.map { " (\($0))" } ?? "") }
        if let inodes = report.heldInodes, let handles = report.heldHandles {
            line += report.tableCopied == true
                ? ", \(inodes) inodes and \(handles) handles copied through the state (slow: a version that keeps its own table)"
                : ", \(inodes) inodes and \(handles) handles kept in place"
        }
        if let error = report.error { line += " (\(error))" }
        for phase in report.phases ?? [] {
            let name = phase.phase.rawValue
            line += "\n  " + name + String(repeating: " ", count: max(1, 10 - name.count)) + micros(phase.micros)
        }
        return line + "\n"
    }

    /// One line per entry, oldest first, each prefixed with its time and action.
    public static func history(_ entries: [UpgradeReport]) -> String {
        guard !entries.isEmpty else { return "no upgrades yet\n" }
        return entries.map { entry in
            var prefix = ""
            if let time = entry.time { prefix += time + "  " }
            if let action = entry.action { prefix += action.rawValue + ": " }
            return prefix + upgrade(entry)
        }.joined()
    }

    /// "42s", "5m 12s", "2h 03m", "3d 4h".
    public static func duration(seconds: Double) -> String {
        let total = Int(max(0, seconds))
        let (days, hours, minutes, secs) = (total / 86400, total / 3600 % 24, total / 60 % 60, total % 60)
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        if days > 0 { return "\(days)d \(hours)h" }
        if hours > 0 { return "\(hours)h \(two(minutes))m" }
        if minutes > 0 { return "\(minutes)m \(two(secs))s" }
        return "\(secs)s"
    }

    /// "850 µs", "2.1 ms", "1.50 s".
    public static func micros(_ value: UInt64) -> String {
        if value < 1000 { return "\(value) µs" }
        if value < 1_000_000 { return "\(fixed(Double(value) / 1000, 1)) ms" }
        return "\(fixed(Double(value) / 1_000_000, 2)) s"
    }

    /// "512 B", "4.0 KiB", "1.5 MiB".
    public static func bytes(_ value: UInt64) -> String {
        if value < 1024 { return "\(value) B" }
        if value < 1 << 20 { return "\(fixed(Double(value) / 1024, 1)) KiB" }
        return "\(fixed(Double(value) / Double(1 << 20), 1)) MiB"
    }

    private static func fixed(_ value: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = Int((value * scale).rounded())
        let whole = scaled / Int(scale), fraction = String(scaled % Int(scale))
        return "\(whole)." + String(repeating: "0", count: digits - fraction.count) + fraction
    }
}
