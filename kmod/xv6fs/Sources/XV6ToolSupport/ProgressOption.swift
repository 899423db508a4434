/// fsck(8)'s `-C [fd]`: an option whose value may be left out, which
/// ArgumentParser cannot say. A bare `-C` (not followed by a number)
/// becomes `-C0`, so the parser always sees a value.
public enum ProgressOption {
    public static func normalized(_ arguments: [String]) -> [String] {
        var result: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument == "--" {
                result += arguments[(index - 1)...]
                break
            }
            let next = index < arguments.count ? arguments[index] : ""
            let nextIsNumber = !next.isEmpty && next.allSatisfy(\.isASCII) && next.allSatisfy(\.isNumber)
            result.append(argument == "-C" && !nextIsNumber ? "-C0" : argument)
        }
        return result
    }
}
