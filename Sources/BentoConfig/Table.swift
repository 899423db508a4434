import TOMLKit

/// A TOML table being checked, with what its errors need: the field path
/// (`mount[2]`) and where in the text its keys are.
struct Table {
    let toml: TOMLTable
    /// "" for the top level.
    let path: String
    /// The table's header line: where a missing key is reported.
    let line: Int?
    let source: String
    /// The line a key is written on, if it can be found.
    let lineOf: (String) -> Int?

    init(_ toml: TOMLTable, path: String, line: Int?, source: String, lineOf: @escaping (String) -> Int?) {
        self.toml = toml
        self.path = path
        self.line = line
        self.source = source
        self.lineOf = lineOf
    }

    /// An error about `key` (nil: the table itself), at the key's line.
    func failure(_ key: String?, _ message: String) -> ConfigError {
        let field = key.map { path.isEmpty ? $0 : "\(path).\($0)" } ?? (path.isEmpty ? nil : path)
        return ConfigError(source: source, line: key.flatMap(lineOf) ?? line, field: field, message: message)
    }

    /// A required key that is not there, reported at the table's header.
    func missing(_ key: String, _ what: String) -> ConfigError {
        var error = failure(key, "missing: every [[mount]] needs \(what)")
        error.line = line
        return error
    }

    /// Refuses keys not in `known`: a typo like `mountpiont` must not pass
    /// silently. The first one in the file is reported.
    func refuseUnknownKeys(_ known: [String]) throws(ConfigError) {
        let unknown = toml.keys.filter { !known.contains($0) }
            .sorted { (lineOf($0) ?? .max, $0) < (lineOf($1) ?? .max, $1) }
        if let key = unknown.first {
            throw failure(key, "unknown key (known keys: \(known.joined(separator: ", ")))")
        }
    }

    func string(_ key: String) throws(ConfigError) -> String? {
        guard let value = toml[key] else { return nil }
        guard let string = value.string else { throw failure(key, "must be a string, not \(show(value))") }
        return string
    }

    /// The daemon runs from `/` under systemd: a relative path would mean
    /// something different there than where the file was written.
    func absolutePath(_ key: String) throws(ConfigError) -> String? {
        guard let value = toml[key] else { return nil }
        guard let path = value.string, path.hasPrefix("/") else {
            throw failure(key, "must be an absolute path, not \(show(value))")
        }
        return path
    }

    /// A module path, or a stack of them (`["layer.so", "fs.so"]`, top
    /// first): as one spec, the paths one per line (BentoHost's ModuleStack).
    func modulePaths(_ key: String) throws(ConfigError) -> String? {
        guard let value = toml[key] else { return nil }
        guard let array = value.array else { return try absolutePath(key) }
        var paths: [String] = []
        for element in array {
            guard let path = element.string, path.hasPrefix("/"), !path.contains(Character("\n")) else {
                throw failure(key, "must be absolute paths, not \(show(element))")
            }
            paths.append(path)
        }
        guard !paths.isEmpty else { throw failure(key, "must name at least one module file") }
        return paths.joined(separator: "\n")
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let value = toml[key] else { return nil }
        guard let int = value.int, range.contains(int) else {
            throw failure(key, "must be an integer from \(range.lowerBound) to \(range.upperBound), not \(show(value))")
        }
        return int
    }

    func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let value = toml[key] else { return nil }
        guard let bool = value.bool else { throw failure(key, "must be true or false, not \(show(value))") }
        return bool
    }
}
