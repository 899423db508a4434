/// How far a check is, pass by pass, numbered as e2fsck numbers its own so
/// that `fsck.xv6 -C` lines read the same: 1 inodes, 2 directories,
/// 3 connectivity (orphans), 4 link counts, 5 the free bitmap.
public struct CheckProgress: Sendable, Equatable {
    public var pass: Int
    public var current: UInt64
    public var total: UInt64

    public init(pass: Int, current: UInt64, total: UInt64) {
        self.pass = pass; self.current = current; self.total = total
    }

    public static let passes = 5
    /// Where each pass starts and ends in the whole check, by its usual cost.
    static let spans: [(start: Double, end: Double)] = [(0, 0.6), (0.6, 0.85), (0.85, 0.87), (0.87, 0.9), (0.9, 1)]

    /// The share of the whole check done, 0...1.
    public var fraction: Double {
        guard (1...Self.passes).contains(pass) else { return 0 }
        let span = Self.spans[pass - 1]
        let within = total == 0 ? 1 : Double(min(current, total)) / Double(total)
        return span.start + (span.end - span.start) * within
    }
}
