/// A fixed-size set of numbers below `count`, one bit each: block and inode
/// maps stay small even for images of many millions of blocks.
struct Bitset {
    let count: UInt64
    private(set) var words: [UInt64]

    init(count: UInt64) {
        self.count = count
        words = [UInt64](repeating: 0, count: Int((count + 63) / 64))
    }

    /// False for numbers out of range, so callers need no extra bounds check.
    func contains(_ i: UInt64) -> Bool {
        guard i < count else { return false }
        return words[Int(i >> 6)] & (1 << (i & 63)) != 0
    }

    /// Adds `i`; false if it was already there or is out of range.
    @discardableResult
    mutating func insert(_ i: UInt64) -> Bool {
        guard i < count else { return false }
        let index = Int(i >> 6)
        let bit: UInt64 = 1 << (i & 63)
        if words[index] & bit != 0 { return false }
        words[index] |= bit
        return true
    }

    mutating func insert(_ range: Range<UInt64>) {
        for i in range { insert(i) }
    }

    /// The 64 members starting at `64 * index`, bit n standing for 64 * index + n.
    func word(_ index: Int) -> UInt64 {
        index >= 0 && index < words.count ? words[index] : 0
    }

    var population: UInt64 {
        words.reduce(0) { $0 + UInt64($1.nonzeroBitCount) }
    }
}
