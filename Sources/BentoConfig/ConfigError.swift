/// A config file the daemon must not start with. Its description reads
/// `file:line: field: what is wrong`, for example
/// `/etc/bento/bento.toml:7: mount[2].threads: must be an integer from 1 to 256, not "many"`;
/// the line and the field are left out where there is none (an unreadable file).
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file's path, or what `parse` was told to call the text.
    public var source: String
    /// 1-based line, when the problem has one.
    public var line: Int?
    /// Path of the field: `control_socket`, `mount[2].threads` (mounts count from 1).
    public var field: String?
    /// What is wrong.
    public var message: String

    public init(source: String, line: Int? = nil, field: String? = nil, message: String) {
        self.source = source
        self.line = line
        self.field = field
        self.message = message
    }

    public var description: String {
        var text = source
        if let line { text += ":\(line)" }
        if let field { text += ": \(field)" }
        return text + ": " + message
    }
}
