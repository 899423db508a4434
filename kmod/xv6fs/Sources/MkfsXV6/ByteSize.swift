import ArgumentParser

/// A size in bytes: a number, optionally followed by K, M, G or T (powers
/// of 1024; "KiB", "MB" and lower case are accepted too).
struct ByteSize: ExpressibleByArgument, CustomStringConvertible {
    var bytes: UInt64
    var description: String

    init?(argument: String) {
        var digits = Substring(argument)
        var unit = ""
        while let last = digits.last, last.isLetter {
            unit = String(last) + unit
            digits = digits.dropLast()
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), let number = UInt64(digits) else { return nil }
        let shifts: [String: UInt64] = ["": 0, "K": 10, "M": 20, "G": 30, "T": 40]
        // "K", "KB", "KiB" all mean 1024; a lone "B" means bytes.
        var prefix = unit.uppercased()
        if prefix.hasSuffix("B") {
            prefix.removeLast()
            if prefix.count == 2 && prefix.hasSuffix("I") { prefix.removeLast() }
        }
        guard let shift = shifts[prefix] else { return nil }
        let (value, overflow) = number.multipliedReportingOverflow(by: 1 << shift)
        guard !overflow else { return nil }
        bytes = value
        description = argument
    }

    /// Bytes in a readable unit: "64 MiB", "1.5 GiB".
    static func format(_ bytes: UInt64) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        let rounded = (value * 10).rounded() / 10
        let text = rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
        return "\(text) \(units[unit])"
    }
}
