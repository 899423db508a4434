import CSystemd
import Glibc

/// The daemon's side of systemd's service protocol (sd_notify(3)): readiness,
/// status, the watchdog, and the fd store that keeps mounts across a
/// restart. Every call is a no-op when not started by systemd.
public enum ServiceManager {
    /// True when systemd waits for our notifications (NOTIFY_SOCKET is set).
    public static var isManaging: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// Sends `state` ("READY=1\nSTATUS=...") to systemd, with `fds`.
    @discardableResult
    public static func notify(_ state: String, fds: [Int32] = []) -> Bool {
        fds.withUnsafeBufferPointer { sd_pid_notify_with_fds(0, 0, state, $0.baseAddress, UInt32($0.count)) > 0 }
    }

    public static func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    public static func status(_ text: String) { notify("STATUS=\(text)") }
    public static func stopping(status: String) { notify("STOPPING=1\nSTATUS=\(status)") }
    public static func reloading(status: String) { notify("RELOADING=1\nSTATUS=\(status)") }
    public static func watchdog() { notify("WATCHDOG=1") }

    /// How often systemd wants WATCHDOG=1 (WatchdogSec=), if at all.
    public static var watchdogInterval: Double? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0 else { return nil }
        return Double(usec) / 1e6
    }

    // MARK: The fd store

    /// Hands `fd` to systemd to keep under `name` while we restart. Names
    /// may repeat (systemd keeps every fd); `removeStored` drops them all.
    @discardableResult
    public static func store(_ fd: Int32, name: String) -> Bool {
        notify("FDSTORE=1\nFDNAME=\(name)", fds: [fd])
    }

    public static func removeStored(name: String) { notify("FDSTOREREMOVE=1\nFDNAME=\(name)") }

    /// A new anonymous memory file (close-on-exec) to hand to the store.
    public static func memoryFile(name: String) -> Int32 { bento_memfd_create(name) }

    /// The fds systemd passed us at start (from the fd store), by name;
    /// the environment variables are cleared so no child inherits them.
    public static func storedFileDescriptors() -> [(name: String, fd: Int32)] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [] }
        defer { free(names) }
        return (0..<Int(count)).map { i in
            let name = names?[i].map { String(cString: $0) } ?? ""
            free(names?[i])
            let fd = SD_LISTEN_FDS_START + Int32(i)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            return (name, fd)
        }
    }

    /// The job systemd runs on our unit now ("restart", "stop", ...): what
    /// a SIGTERM means. nil when not under systemd or it cannot tell.
    public static func currentJobType() -> String? {
        guard let type = bento_unit_job_type() else { return nil }
        defer { free(type) }
        return String(cString: type)
    }
}
