#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A config file is small; more than this is the wrong file (or /dev/zero).
let maxConfigBytes = 1 << 20

/// The file's text, or an error naming the path and the reason (from errno).
func readConfigFile(_ path: String) throws(ConfigError) -> String {
    func failure(_ message: String) -> ConfigError { ConfigError(source: path, message: message) }

    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw failure("cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }

    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw failure("cannot read: \(String(cString: strerror(errno)))")
        }
        if n == 0 { break }
        bytes += chunk[..<n]
        if bytes.count > maxConfigBytes { throw failure("larger than \(maxConfigBytes / 1024) KiB: not a config file") }
    }
    guard let text = String(validating: bytes, as: UTF8.self) else { throw failure("not UTF-8 text") }
    return text
}
