/// The config text as lines, to say where a key was written: TOMLKit gives
/// line numbers for syntax errors only, not for the values it parsed.
///
/// This is a line scanner, not a second TOML parser: it knows table headers
/// (`[name]`, `[[name]]`) and assignments (`key = ...`), which is all a
/// config file written by hand uses. When it cannot find a key (an inline
/// table, say) the caller falls back to the enclosing table's line.
struct SourceLines {
    private enum Kind: Equatable {
        /// `[name]` or `[[name]]` (`array`); `name` is the first part of a dotted name.
        case header(name: String, array: Bool)
        /// `key = ...`; `key` is the first part of a dotted key.
        case assignment(key: String)
        case other
    }

    /// Index 0 is line 1.
    private let kinds: [Kind]

    init(_ text: String) {
        // "\r\n" is one Character in Swift, so name both separators.
        kinds = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            .map(Self.kind)
    }

    /// Lines of the `[[mount]]` headers, in the order of the tables.
    var mountHeaders: [Int] {
        kinds.indices.filter { kinds[$0] == .header(name: "mount", array: true) }.map { $0 + 1 }
    }

    /// The line of a top-level key: an assignment before the first table
    /// header, or a header of that table (`[name]`, `[[name]]`, `[name.sub]`).
    func topLevelLine(of key: String) -> Int? {
        var inTable = false
        for (index, kind) in kinds.enumerated() {
            switch kind {
            case .header(let name, _):
                if name == key { return index + 1 }
                inTable = true
            case .assignment(let assigned):
                if !inTable && assigned == key { return index + 1 }
            case .other:
                break
            }
        }
        return nil
    }

    /// The first line assigning `key` in the table whose header is on line
    /// `header`, i.e. before the next header.
    func line(of key: String, inTableAt header: Int) -> Int? {
        var index = header  // the line after the header, 0-based
        while index < kinds.count {
            switch kinds[index] {
            case .header: return nil
            case .assignment(key): return index + 1
            default: index += 1
            }
        }
        return nil
    }

    private static func kind(of line: Substring) -> Kind {
        let trimmed = line.drop(while: \.isWhitespace)
        if trimmed.first == "[" {
            // Header: drop a trailing comment and all spaces, then unwrap.
            var compact = String(trimmed.prefix { $0 != "#" }.filter { !$0.isWhitespace })
            let array = compact.hasPrefix("[[") && compact.hasSuffix("]]")
            let depth = array ? 2 : 1
            guard compact.count > 2 * depth, compact.hasSuffix(String(repeating: "]", count: depth)) else { return .other }
            compact = String(compact.dropFirst(depth).dropLast(depth))
            return .header(name: firstPart(of: compact), array: array)
        }
        guard trimmed.first != "#", let equals = trimmed.firstIndex(of: "=") else { return .other }
        let key = trimmed[..<equals].filter { !$0.isWhitespace }
        return key.isEmpty ? .other : .assignment(key: firstPart(of: key))
    }

    /// `a.b` -> `a`, `"a"` -> `a`: the name of the outermost table or key.
    private static func firstPart(of dotted: String) -> String {
        var part = Substring(dotted)
        if let quote = part.first, quote == "\"" || quote == "'" {
            part = part.dropFirst().prefix { $0 != quote }
        } else {
            part = part.prefix { $0 != "." }
        }
        return String(part)
    }
}
