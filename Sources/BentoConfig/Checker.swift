import TOMLKit

/// Turns config text into a `BentoConfiguration`, or its first problem into
/// a `ConfigError`. TOMLKit parses; this checks the shape and the values.
struct Checker {
    static let topLevelKeys = ["control_socket", "state_dir", "mount"]
    static let mountKeys = ["name", "image", "device", "mountpoint", "module", "threads", "poll_us", "cache_mib", "allow_other",
                            "writeback_cache", "read_only", "probation_seconds", "hang_limit_seconds", "health_max_error_increase_percent",
                            "health_max_p99_factor"]

    let text: String
    let source: String
    let lines: SourceLines

    init(text: String, source: String) {
        self.text = text
        self.source = source
        self.lines = SourceLines(text)
    }

    func configuration() throws(ConfigError) -> BentoConfiguration {
        let root = try parseTOML()
        let top = Table(root, path: "", line: nil, source: source, lineOf: lines.topLevelLine(of:))
        try top.refuseUnknownKeys(Self.topLevelKeys)
        let controlSocket = try top.absolutePath("control_socket")
        let stateDirectory = try top.absolutePath("state_dir")

        // No [[mount]] is fine: the daemon then serves what `mount -t xv6` adds.
        let tables = try mountTables(top)
        var mounts: [MountConfiguration] = []
        for (index, table) in tables.enumerated() {
            let mount = try self.mount(table)
            try refuseSharing(mount, table, with: Array(zip(mounts, tables[..<index])))
            mounts.append(mount)
        }
        return BentoConfiguration(mounts: mounts, controlSocket: controlSocket, stateDirectory: stateDirectory)
    }

    private func parseTOML() throws(ConfigError) -> TOMLTable {
        // TOMLKit hands the text to C++ as a C string, which would end at a NUL.
        if let nul = text.firstIndex(of: "\0") {
            let line = text[..<nul].count { $0 == "\n" || $0 == "\r\n" } + 1
            throw ConfigError(source: source, line: line, message: "contains a NUL byte: not a text file")
        }
        do {
            return try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(source: source, line: error.source.begin.line, message: "invalid TOML: \(error.description)")
        } catch {
            throw ConfigError(source: source, message: "invalid TOML: \(error)")
        }
    }

    /// The `[[mount]]` tables, each with its header line to point errors at.
    private func mountTables(_ top: Table) throws(ConfigError) -> [Table] {
        guard let value = top.toml["mount"] else { return [] }
        if value.type == .table { throw top.failure("mount", "must be an array of tables: write [[mount]], not [mount]") }
        guard let array = value.array else { throw top.failure("mount", "must be [[mount]] tables, not \(show(value))") }

        let headers = lines.mountHeaders
        var tables: [Table] = []
        for (index, element) in array.enumerated() {
            guard let table = element.table else { throw top.failure("mount", "must be [[mount]] tables, not an array of \(element.type)") }
            let path = "mount[\(index + 1)]"
            if headers.count == array.count {
                let header = headers[index]
                tables.append(Table(table, path: path, line: header, source: source) { lines.line(of: $0, inTableAt: header) })
            } else {
                // Written inline (`mount = [{...}]`): all we know is where `mount` is.
                tables.append(Table(table, path: path, line: top.lineOf("mount"), source: source) { _ in nil })
            }
        }
        return tables
    }

    private func mount(_ table: Table) throws(ConfigError) -> MountConfiguration {
        try table.refuseUnknownKeys(Self.mountKeys)
        let name = try table.string("name")
        if name == "" { throw table.failure("name", "must not be empty (leave it out instead)") }
        let image = try imageOrDevice(table)
        guard let mountpoint = try table.absolutePath("mountpoint") else { throw table.missing("mountpoint", "a mountpoint") }
        guard let module = try table.modulePaths("module") else { throw table.missing("module", "a module") }
        return MountConfiguration(
            name: name, image: image, mountpoint: mountpoint, module: module,
            threads: try table.int("threads", in: MountConfiguration.threadsRange),
            pollMicroseconds: try table.int("poll_us", in: MountConfiguration.pollRange),
            cacheMiB: try table.int("cache_mib", in: MountConfiguration.cacheMiBRange) ?? MountConfiguration.defaultCacheMiB,
            allowOther: try table.bool("allow_other") ?? false,
            writebackCache: try table.bool("writeback_cache") ?? false,
            readOnly: try table.bool("read_only") ?? false,
            probationSeconds: try table.int("probation_seconds", in: MountConfiguration.probationRange)
                ?? MountConfiguration.defaultProbationSeconds,
            hangLimitSeconds: try table.int("hang_limit_seconds", in: MountConfiguration.hangLimitRange)
                ?? MountConfiguration.defaultHangLimitSeconds,
            healthMaxErrorIncreasePercent: try table.int("health_max_error_increase_percent", in: 0...100)
                ?? MountConfiguration.defaultHealthMaxErrorIncreasePercent,
            healthMaxP99Factor: try table.int("health_max_p99_factor", in: 1...1000) ?? MountConfiguration.defaultHealthMaxP99Factor)
    }

    /// `image` and `device` are two names for one thing: exactly one must be there.
    private func imageOrDevice(_ table: Table) throws(ConfigError) -> String {
        switch (try table.absolutePath("image"), try table.absolutePath("device")) {
        case (let path?, nil), (nil, let path?):
            return path
        case (nil, nil):
            throw table.missing("image", "an image (or a device)")
        case (_?, _?):
            // Point at the second one: that is the line to delete.
            let later = (table.lineOf("device") ?? 0) >= (table.lineOf("image") ?? 0) ? "device" : "image"
            throw table.failure(later, "give image or device, not both")
        }
    }

    /// Two mounts cannot share a mountpoint, and two serving one image would
    /// corrupt it. Names are labels users pick mounts by, so they are unique too.
    private func refuseSharing(_ mount: MountConfiguration, _ table: Table,
                               with earlier: [(MountConfiguration, Table)]) throws(ConfigError) {
        for (other, otherTable) in earlier {
            func used(_ key: String) -> ConfigError {
                let place = otherTable.lineOf(key) ?? otherTable.line
                return table.failure(key, "already used by \(otherTable.path)" + (place.map { " (line \($0))" } ?? ""))
            }
            if normalized(mount.mountpoint) == normalized(other.mountpoint) { throw used("mountpoint") }
            if normalized(mount.image) == normalized(other.image) {
                throw used(table.toml["device"] != nil ? "device" : "image")
            }
            if let name = mount.name, name == other.name { throw used("name") }
        }
    }
}

/// `/mnt//xv6/` names the same directory as `/mnt/xv6`. Symlinks and `..`
/// are left alone: only the daemon, looking at the file system, can judge those.
func normalized(_ path: String) -> String {
    "/" + path.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
}

/// A value as it would be written in TOML, for "must be ..., not X" messages.
func show(_ value: TOMLValueConvertible) -> String {
    switch value.type {
    case .string: return value.string.map(show) ?? "a string"
    case .int: return value.int.map(String.init) ?? "an integer"
    case .double: return value.double.map { String($0) } ?? "a number"
    case .bool: return value.bool.map(String.init) ?? "a boolean"
    case .table: return "a table"
    case .array: return "an array"
    case .date, .time, .dateTime: return "a \(value.type)"
    }
}

/// A string as a TOML basic string. (Not `debugDescription`: TOMLKit
/// redefines that for String to return the string unquoted.)
func show(_ string: String) -> String {
    var quoted = "\""
    for scalar in string.unicodeScalars {
        switch scalar {
        case "\"", "\\": quoted += "\\" + String(scalar)
        case "\n": quoted += "\\n"
        case "\t": quoted += "\\t"
        case _ where scalar.value < 0x20 || scalar.value == 0x7f:
            let hex = String(scalar.value, radix: 16, uppercase: true)
            quoted += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: quoted.unicodeScalars.append(scalar)
        }
    }
    return quoted + "\""
}
