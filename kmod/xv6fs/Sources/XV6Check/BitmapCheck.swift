import BentoKit
import XV6Layout

/// The free bitmap against the blocks in use: every block before the data
/// area, and every block some inode holds. A block in use but marked free
/// would be handed out twice; a block marked in use that nothing holds is
/// leaked. Repair marks the former used and, if every block map could be
/// followed, frees the latter.
extension CheckRun {
    /// Returns the number of blocks in use.
    func checkBitmap() -> UInt64 {
        var inUse = claimed
        inUse.insert(0..<UInt64(sb.dataStart))
        let freeLeaks = !blockMapsDamaged && corrupt.population == 0
        var leaked = RangeList()
        var missing = RangeList()
        var writesFailed = false
        let bitsPerBlock = UInt64(Layout.bitsPerBlock)
        for index in 0..<UInt64(sb.bitmapBlocks) {
            tick(5, index, of: UInt64(sb.bitmapBlocks))
            let first = index * bitsPerBlock
            guard first < sb.totalBlocks else { break }
            let blockNumber = UInt64(sb.bitmapStart) + index
            guard var bytes = readBlock(blockNumber, "bitmap") else {
                writesFailed = true
                continue
            }
            var changed = false
            for w in 0..<(Layout.blockSize / 8) {
                let base = first + UInt64(w) * 64
                guard base < sb.totalBlocks else { break }
                // Bits past the end of the file system are not compared.
                let valid: UInt64 = sb.totalBlocks - base >= 64 ? ~0 : (1 << (sb.totalBlocks - base)) - 1
                let onDisk = bytes.u64(w * 8)
                let wanted = inUse.word(Int(base / 64))
                let leakedBits = onDisk & ~wanted & valid
                let missingBits = wanted & ~onDisk & valid
                guard leakedBits | missingBits != 0 else { continue }
                leaked.add(bits: leakedBits, base: base)
                missing.add(bits: missingBits, base: base)
                bytes.set(w * 8, (onDisk | missingBits) & ~(freeLeaks ? leakedBits : 0))
                changed = true
            }
            if changed && !readOnly && !repairBlock(blockNumber, bytes) { writesFailed = true }
        }
        tick(5, UInt64(sb.bitmapBlocks), of: UInt64(sb.bitmapBlocks))
        let written = !readOnly && !writesFailed
        for range in missing.ranges {
            error(.bitmapMissing, "\(describe(range)) in use but marked free in the bitmap",
                  repaired: written, block: range.lowerBound)
        }
        let why = freeLeaks || readOnly ? "" : " (kept: some block maps could not be followed)"
        for range in leaked.ranges {
            error(.bitmapLeak, "\(describe(range)) marked in use but held by nothing\(why)",
                  repaired: written && freeLeaks, block: range.lowerBound)
        }
        return inUse.population
    }

    private func describe(_ range: Range<UInt64>) -> String {
        range.count == 1 ? "block \(range.lowerBound) is" : "blocks \(range.lowerBound)-\(range.upperBound - 1) are"
    }
}

/// Runs of block numbers, added in increasing order. Keeps a bounded number
/// of runs; past that, later blocks join the last run (so it may cover
/// blocks that are fine, which its message then overstates).
struct RangeList {
    static let limit = 10_000
    private(set) var ranges: [Range<UInt64>] = []

    mutating func add(bits: UInt64, base: UInt64) {
        var rest = bits
        while rest != 0 {
            let block = base + UInt64(rest.trailingZeroBitCount)
            rest &= rest - 1
            if let last = ranges.last, last.upperBound == block || ranges.count >= Self.limit {
                ranges[ranges.count - 1] = last.lowerBound..<(block + 1)
            } else {
                ranges.append(block..<(block + 1))
            }
        }
    }
}
