// xv6-bench: the xv6fs core in process, on a RAM device, single thread.
//
// Drives the file operations the way the kernel would (every reference a
// lookup-like answer hands out is forgotten again) and prints one row per
// workload: the median rate of `repeats` timed rounds, with min and max,
// after one untimed warm-up round. `--markdown` prints the table as Markdown;
// `--journal` lends the file system an operation journal (a memfd), as
// bento-upgraded does, to measure what it costs. `--metadata` runs only the
// metadata workloads, for profiling them; XV6_BENCH_DIRS=N in the
// environment makes the metadata rounds N directories of 10,000 files
// instead of 10 (a run small enough for callgrind).
@_spi(Host) import BentoKit
import BentoServices
import Glibc
import XV6FS
import XV6Layout

let markdown = CommandLine.arguments.dropFirst().contains("--markdown")
let journaled = CommandLine.arguments.dropFirst().contains("--journal")
let metadataOnly = CommandLine.arguments.dropFirst().contains("--metadata")

// MARK: Configuration

let repeats = 3
let deviceBlocks: UInt64 = 512 * 1024                // 2 GiB
let inodeCount: UInt32 = 512 * 1024                  // 4 rounds of 100,000 files and then some
let cacheBlocks = Int(deviceBlocks)                  // the whole working set fits
let directories = Int(getenv("XV6_BENCH_DIRS").map { String(cString: $0) } ?? "") ?? 10
let filesPerDirectory = 10_000                       // 100,000 files per round
let syncWrites = 20_000                              // 4 KiB write + fsync, per round
let bigFileChunks = 1024                             // 1 MiB each: a 1 GiB file
let chunk = 1 << 20

let ctx = RequestContext.root
let root: InodeNumber = 1

// MARK: Timing and results

func seconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Seconds `body` took.
func timed(_ body: () throws -> Void) rethrows -> Double {
    let start = seconds()
    try body()
    return seconds() - start
}

struct Row {
    var name: String
    var unit: String
    var rates: [Double]   // sorted
    var goal: Double?
    var median: Double { rates[rates.count / 2] }
    var verdict: String {
        guard let goal else { return "" }
        return median >= goal ? "met" : "MISSED"
    }
}

/// Runs round 0 as warm-up, then `repeats` timed rounds; each round returns
/// its rate.
func measure(_ name: String, unit: String, goal: Double? = nil, _ round: (Int) throws -> Double) rethrows -> Row {
    _ = try round(0)
    var rates: [Double] = []
    for r in 1...repeats { rates.append(try round(r)) }
    return Row(name: name, unit: unit, rates: rates.sorted(), goal: goal)
}

func format(_ value: Double) -> String {
    let digits = String(Int(value.rounded()))
    var out = ""
    for (i, c) in digits.reversed().enumerated() {
        if i > 0 && i % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return String(out.reversed())
}

func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return left ? s + fill : fill + s
}

func printTable(_ rows: [Row]) {
    let header = ["Workload", "Median", "Min", "Max", "Unit", "Goal", ""]
    let cells = rows.map { row in
        [row.name, format(row.median), format(row.rates.first!), format(row.rates.last!), row.unit,
         row.goal.map { ">= " + format($0) } ?? "", row.verdict]
    }
    if markdown {
        print("| " + header.joined(separator: " | ") + " |")
        print("|:--|--:|--:|--:|:--|--:|:--|")
        for c in cells { print("| " + c.joined(separator: " | ") + " |") }
    } else {
        let widths = header.indices.map { i in max(header[i].count, cells.map { $0[i].count }.max() ?? 0) }
        let line = { (c: [String]) in
            c.indices.map { i in pad(c[i], widths[i], left: i == 0 || i == 4 || i == 6) }.joined(separator: "  ")
        }
        print(line(header))
        print(String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1)))
        for c in cells { print(line(c)) }
    }
}

// MARK: The workloads

/// One mounted file system on a fresh RAM device, and the workloads run on
/// it in order: each leaves what the next one uses.
final class Bench {
    let fs: any FileSystem
    var rows: [Row] = []

    init() throws {
        let device = MemoryBlockDevice(blockCount: deviceBlocks)
        try Format.format(device, inodeCount: inodeCount, now: Timespec(seconds: 1_700_000_000, nanoseconds: 0))
        let cache = LRUBufferCache(device: device, capacity: cacheBlocks)
        let journal = journaled ? try SharedMemoryJournal(cache: cache) : nil
        fs = try Xv6Module(version: SemanticVersion(1, 0, 0))
            .mount(SuperBlock(cache: cache, journal: journal))
    }

    func workload(_ name: String, unit: String, goal: Double? = nil, _ round: (Int) throws -> Double) rethrows {
        rows.append(try measure(name, unit: unit, goal: goal, round))
    }

    func createFile(_ parent: InodeNumber, _ name: FileName) throws -> (InodeNumber, FileHandle) {
        let (e, open) = try fs.create(ctx, parent: parent, name: name, mode: 0o644, flags: OpenFlags.readWrite)
        fs.forget(ino: e.ino, count: 1)
        return (e.ino, open.handle)
    }

    // Round r creates 100,000 empty files in its own directories; the stat
    // rounds go over all of them; unlink round r removes what create round
    // r made.
    let names = (0..<filesPerDirectory).map { FileName("file-\($0)") }
    var roundDirectories: [[InodeNumber]] = []
    var allFiles: [InodeNumber] = []

    func metadata() throws {
        try workload("create (+release, forget)", unit: "files/s", goal: 100_000) { r in
            let dirs = try (0..<directories).map { d in
                let e = try fs.mkdir(ctx, parent: root, name: FileName("r\(r)-d\(d)"), mode: 0o755)
                fs.forget(ino: e.ino, count: 1)
                return e.ino
            }
            roundDirectories.append(dirs)
            var created: [InodeNumber] = []
            created.reserveCapacity(directories * filesPerDirectory)
            let elapsed = try timed {
                for dir in dirs {
                    for name in names {
                        let (e, open) = try fs.create(ctx, parent: dir, name: name, mode: 0o644, flags: OpenFlags.readWrite)
                        try fs.release(ctx, ino: e.ino, handle: open.handle)
                        fs.forget(ino: e.ino, count: 1)
                        created.append(e.ino)
                    }
                }
            }
            allFiles += created
            return Double(created.count) / elapsed
        }

        try workload("stat: getattr", unit: "ops/s", goal: 300_000) { _ in
            let elapsed = try timed {
                for ino in allFiles { _ = try fs.getattr(ctx, ino: ino) }
            }
            return Double(allFiles.count) / elapsed
        }

        // The kernel forgets entries long after it looked them up: the
        // forgets run after the timed loop.
        try workload("stat: lookup", unit: "ops/s", goal: 300_000) { _ in
            var found: [InodeNumber] = []
            found.reserveCapacity(allFiles.count)
            let elapsed = try timed {
                for dirs in roundDirectories {
                    for dir in dirs {
                        for name in names { found.append(try fs.lookup(ctx, parent: dir, name: name).ino) }
                    }
                }
            }
            for ino in found { fs.forget(ino: ino, count: 1) }
            return Double(found.count) / elapsed
        }

        try workload("unlink", unit: "files/s") { r in
            let dirs = roundDirectories[r]
            let elapsed = try timed {
                for dir in dirs {
                    for name in names { try fs.unlink(ctx, parent: dir, name: name) }
                }
            }
            for d in 0..<directories { try fs.rmdir(ctx, parent: root, name: FileName("r\(r)-d\(d)")) }
            try fs.sync()
            return Double(dirs.count * names.count) / elapsed
        }
    }

    func data() throws {
        let big = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { big.deallocate() }
        for i in 0..<chunk { big[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
        let block = UnsafeRawBufferPointer(rebasing: big[0..<4096])

        try workload("4 KiB write + fsync", unit: "ops/s") { r in
            let name = FileName("sync-\(r)")
            let (ino, fh) = try createFile(root, name)
            let elapsed = try timed {
                for i in 0..<syncWrites {
                    _ = try fs.write(ctx, ino: ino, handle: fh, offset: UInt64(i * 4096), data: block)
                    try fs.fsync(ctx, ino: ino, handle: fh, dataOnly: false)
                }
            }
            try fs.release(ctx, ino: ino, handle: fh)
            try fs.unlink(ctx, parent: root, name: name)
            return Double(syncWrites) / elapsed
        }

        // Each write round makes a fresh 1 GiB file (ending with fsync)
        // after removing the previous one; the read rounds read the last.
        let bytes = Double(bigFileChunks * chunk)
        var previous: FileName?
        var last: InodeNumber = 0
        try workload("sequential write 1 MiB", unit: "MB/s", goal: 1000) { r in
            if let name = previous { try fs.unlink(ctx, parent: root, name: name); try fs.sync() }
            let name = FileName("big-\(r)")
            let (ino, fh) = try createFile(root, name)
            let elapsed = try timed {
                for i in 0..<bigFileChunks {
                    let n = try fs.write(ctx, ino: ino, handle: fh, offset: UInt64(i * chunk), data: UnsafeRawBufferPointer(big))
                    precondition(n == chunk)
                }
                try fs.fsync(ctx, ino: ino, handle: fh, dataOnly: false)
            }
            try fs.release(ctx, ino: ino, handle: fh)
            previous = name
            last = ino
            return bytes / 1e6 / elapsed
        }

        try workload("sequential read 1 MiB", unit: "MB/s") { _ in
            let fh = try fs.open(ctx, ino: last, flags: OpenFlags.readOnly).handle
            let elapsed = try timed {
                for i in 0..<bigFileChunks {
                    let n = try fs.read(ctx, ino: last, handle: fh, offset: UInt64(i * chunk), into: big)
                    precondition(n == chunk)
                }
            }
            try fs.release(ctx, ino: last, handle: fh)
            return bytes / 1e6 / elapsed
        }
    }
}

// MARK: Main

do {
    let bench = try Bench()
    try bench.metadata()
    if !metadataOnly { try bench.data() }
    try bench.fs.destroy()
    let files = format(Double(directories * filesPerDirectory))
    if markdown {
        print("# In-process benchmark of the xv6fs core\n")
        print("Written by `xv6-bench --markdown`. The file system runs in the benchmark's process on a "
              + "\((deviceBlocks * 4096) >> 30) GiB RAM device with a buffer cache of up to "
              + "\((cacheBlocks * 4096) >> 30) GiB, on one thread, release build. Each row is the median of "
              + "\(repeats) timed rounds after a warm-up round. create and unlink: \(files) files per round in "
              + "\(directories) directories; getattr and lookup: over all "
              + "\(format(Double(bench.allFiles.count))) files (lookups forgotten after each round); "
              + "sequential: a 1 GiB file, the writes ending with fsync. MB = 10^6 bytes."
              + (journaled ? " With an operation journal (`--journal`)." : "") + "\n")
    } else {
        print("xv6fs core: \((deviceBlocks * 4096) >> 30) GiB RAM device, one thread, "
              + "median of \(repeats) rounds after a warm-up" + (journaled ? ", operation journal" : "") + "\n")
    }
    printTable(bench.rows)
} catch {
    let message = "xv6-bench: \(error)\n"
    _ = message.withCString { write(2, $0, strlen($0)) }
    exit(1)
}
