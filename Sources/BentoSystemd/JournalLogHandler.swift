import CSystemd
import Glibc
import Logging

/// A swift-log handler that writes to journald with structured fields: each
/// metadata key becomes a BENTO_ field (upper-cased, as journald wants), so
/// `journalctl BENTO_MOUNT=/mnt/x` finds a mount's entries. The key
/// "message_id" becomes journald's own MESSAGE_ID (the catalog's key).
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String

    public init(label: String) { self.label = label }

    /// True when the daemon runs under systemd with its output going to the
    /// journal (systemd sets JOURNAL_STREAM then).
    public static var journalIsThere: Bool {
        getenv("JOURNAL_STREAM") != nil && access("/run/systemd/journal/socket", F_OK) == 0
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?,
                    source: String, file: String, function: String, line: UInt) {
        var fields = [
            "MESSAGE=\(message)",
            "PRIORITY=\(Self.priority(level))",
            "SYSLOG_IDENTIFIER=bento-upgraded",
            "CODE_FILE=\(file)", "CODE_LINE=\(line)", "CODE_FUNC=\(function)",
        ]
        for (key, value) in metadata.merging(explicit ?? [:], uniquingKeysWith: { $1 }) {
            fields.append("\(Self.fieldName(key))=\(value)")
        }
        let strings = fields.map { strdup($0)! }
        defer { strings.forEach { free($0) } }
        var vectors = strings.map { iovec(iov_base: UnsafeMutableRawPointer($0), iov_len: strlen($0)) }
        _ = sd_journal_sendv(&vectors, Int32(vectors.count))
    }

    /// syslog priorities.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Journal field names: upper-case letters, digits and underscores,
    /// prefixed so they never collide with journald's own fields.
    static func fieldName(_ key: String) -> String {
        if key == "message_id" { return "MESSAGE_ID" }
        return "BENTO_" + String(key.uppercased().map { ($0.isLetter && $0.isASCII) || $0.isNumber ? $0 : "_" })
    }
}
