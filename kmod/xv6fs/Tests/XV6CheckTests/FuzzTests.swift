import BentoKit
import BentoServices
import Foundation
import Testing
import XV6Check
import XV6Layout

/// A small seedable generator (SplitMix64), so a failing case can be rerun.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Damaged images must give reports: never a trap, never a hang. Set
/// XV6_FUZZ_SEED to rerun with another master seed (the one in use is printed).
@Suite struct Fuzz {
    static let base: ImageBuilder = {
        let image = ImageBuilder(blocks: 256)
        image.populate()
        return image
    }()

    /// XV6_FUZZ_ITERATIONS scales the runs up for a longer local search.
    static var iterations: Int {
        ProcessInfo.processInfo.environment["XV6_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 400
    }

    static var masterSeed: UInt64 {
        ProcessInfo.processInfo.environment["XV6_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x5EED_0F_F5C4
    }

    /// Metadata blocks of the base image, where damage matters most.
    static let interesting: [UInt64] = {
        let sb = base.sb
        var blocks = [UInt64(sb.logStart)] + (UInt64(sb.inodeStart)...UInt64(sb.bitmapStart)).map { $0 }
        for ino in 1..<sb.inodeCount {
            let node = base.inode(ino)
            guard !node.isFree, !node.isRegular else { continue }
            blocks += node.direct.filter { $0 != 0 }.map(UInt64.init)
        }
        let big = (1..<sb.inodeCount).map(base.inode).first { $0.indirect != 0 }!
        return blocks + [UInt64(big.indirect), UInt64(big.direct[0])]
    }()

    @Test func randomByteFlipsNeverCrash() {
        run(iterations: Self.iterations, salt: 1) { image, rng in
            for _ in 0..<Int.random(in: 1...12, using: &rng) {
                let block = Bool.random(using: &rng) ? Self.interesting.randomElement(using: &rng)!
                                                     : UInt64.random(in: 0..<image.sb.totalBlocks, using: &rng)
                let offset = Int.random(in: 0..<Layout.blockSize, using: &rng)
                let value = UInt8.random(in: 0...255, using: &rng)
                image.edit(block) { $0[offset] ^= value == 0 ? 1 : value }
            }
        }
    }

    /// Changes that keep checksums valid, so the damage goes deeper than a
    /// rejected inode or superblock.
    @Test func structuredDamageNeverCrashes() {
        run(iterations: Self.iterations, salt: 2) { image, rng in
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<5: Self.damageInode(image, &rng)
                case 5..<8: Self.damageRecord(image, &rng)
                case 8: Self.writeRandomLog(image, &rng)
                default: Self.damageSuperblock(image, &rng)
                }
            }
        }
    }

    /// Checks a damaged copy of the base image read-only, then repairs it
    /// twice: the second repair must find nothing more to fix.
    func run(iterations: Int, salt: UInt64, damage: (ImageBuilder, inout SeededGenerator) -> Void) {
        let master = Self.masterSeed
        print("fuzz master seed \(master) (set XV6_FUZZ_SEED to rerun)")
        var seeds = SeededGenerator(seed: master ^ salt)
        for _ in 0..<iterations {
            let seed = seeds.next()
            var rng = SeededGenerator(seed: seed)
            let image = ImageBuilder(copying: Self.base)
            damage(image, &rng)
            let snapshot = image.device.snapshot()
            let report = check(image)
            #expect([0, 4, 8].contains(report.exitCode), "seed \(seed): read-only exit \(report.exitCode)")
            #expect(image.device.snapshot() == snapshot, "seed \(seed): read-only check wrote")
            _ = repair(image)
            let second = repair(image)
            #expect(second.errorsCorrected == 0, "seed \(seed): second repair still fixed:\n\(second)")
            #expect(!second.findings(.log).contains { $0.repaired }, "seed \(seed)")
        }
    }

    static func interestingValue(_ rng: inout SeededGenerator) -> UInt64 {
        let choices: [UInt64] = [0, 1, 2, 255, 256, 4095, 4096, 4097, UInt64(Int32.max), UInt64(UInt32.max),
                                 UInt64(base.sb.dataStart), base.sb.totalBlocks - 1, base.sb.totalBlocks,
                                 UInt64(base.sb.inodeCount), Layout.maxFileSize, .max]
        return Bool.random(using: &rng) ? choices.randomElement(using: &rng)! : rng.next() >> Int.random(in: 0...63, using: &rng)
    }

    static func damageInode(_ image: ImageBuilder, _ rng: inout SeededGenerator) {
        let ino = UInt32.random(in: 1..<image.sb.inodeCount, using: &rng)
        var node = image.decodedInode(ino) ?? DiskInode()
        let value = interestingValue(&rng)
        let small = UInt32(truncatingIfNeeded: value)
        switch Int.random(in: 0..<9, using: &rng) {
        case 0: node.mode = [FileMode.regular, FileMode.directory, FileMode.symlink, FileMode.fifo, 0]
                .randomElement(using: &rng)! | 0o644
        case 1: node.nlink = small
        case 2: node.size = min(value, Layout.maxFileSize)
        case 3: node.blockCount = value
        case 4, 5: node.direct[Int.random(in: 0..<Layout.directCount, using: &rng)] = small
        case 6: node.indirect = small
        case 7: node.doubleIndirect = small
        default: node.doubleIndirect = image.sb.dataStart + UInt32.random(in: 0..<20, using: &rng)
        }
        image.setInode(ino, node)
    }

    static func damageRecord(_ image: ImageBuilder, _ rng: inout SeededGenerator) {
        let dirs = (1..<image.sb.inodeCount).filter { image.decodedInode($0)?.isDirectory == true }
        guard let dir = dirs.randomElement(using: &rng) else { return }
        guard let node = image.decodedInode(dir), node.direct[0] != 0 else { return }
        let offset = [0, 12, 24, 28, 60, 96, 4092].randomElement(using: &rng)!
        let value = interestingValue(&rng)
        image.edit(UInt64(node.direct[0])) { bytes in
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: bytes.set(offset, UInt32(truncatingIfNeeded: value))
            case 1: bytes[min(offset + 4, 4095)] = UInt8(truncatingIfNeeded: value)
            case 2: bytes[min(offset + 6, 4095)] = UInt8(truncatingIfNeeded: value)
            default: bytes[min(offset + 3, 4095)] = UInt8(truncatingIfNeeded: value)
            }
        }
    }

    static func writeRandomLog(_ image: ImageBuilder, _ rng: inout SeededGenerator) {
        let count = Int.random(in: 1...4, using: &rng)
        let homes = (0..<count).map { _ in
            Bool.random(using: &rng) ? UInt32(interesting.randomElement(using: &rng)!)
                                     : UInt32.random(in: 0..<UInt32(image.sb.totalBlocks + 2), using: &rng)
        }
        let contents = homes.map { home -> [UInt8] in
            var bytes = home < image.sb.totalBlocks ? image.read(UInt64(home)) : [UInt8](repeating: 0, count: Layout.blockSize)
            for _ in 0..<4 { bytes[Int.random(in: 0..<Layout.blockSize, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            return bytes
        }
        LogReplay().writeLog(into: image, sequence: rng.next(), homes: homes, contents: contents)
    }

    static func damageSuperblock(_ image: ImageBuilder, _ rng: inout SeededGenerator) {
        var sb = image.sb
        let value = interestingValue(&rng)
        let small = UInt32(truncatingIfNeeded: value)
        switch Int.random(in: 0..<5, using: &rng) {
        case 0: sb.totalBlocks = value
        case 1: sb.inodeCount = small
        case 2: sb.logBlocks = small
        case 3: sb.dataStart = small
        default: sb.bitmapBlocks = small
        }
        image.edit(Layout.superblockNumber) { sb.encode(into: $0) }
    }
}
