import XV6ToolSupport
import ArgumentParser
import BentoKit
import BentoServices
import BentoVersion
import Glibc
import XV6Layout

/// mkfs.xv6: lays an empty xv6 file system onto an image file or block device.
struct MkfsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mkfs.xv6",
        abstract: "Make an xv6 file system on an image file or block device.",
        discussion: """
            A missing image file is created with --size (default 64M); an existing file is \
            resized to --size if given, else keeps its size. A block device is used whole, \
            or its first --size bytes. An existing xv6 file system is only overwritten with \
            --force. xv6fs holds at most \(UInt32.max) blocks of 4096 bytes (block numbers \
            are 32 bits on disk): a larger size is refused.

            An image that bento-upgraded serves (it holds the image's lock) or that is \
            mounted is never formatted, even with --force. -O sets format features \
            (Docs/on-disk-format.md): an xv6fs version that does not know an incompat \
            feature refuses the image, and serves one with an unknown ro_compat feature \
            read-only. While formatting, mkfs.xv6 \
            holds the image's lock itself. On a terminal, a format that takes more than \
            a second shows its progress.

            Exit status: 0 on success, 1 on failure.
            """,
        version: bentoVersion)

    static let defaultSize: UInt64 = 64 << 20

    @Option(help: ArgumentHelp("File system size in bytes, or with a K, M or G suffix (powers of 1024).",
                               valueName: "size"))
    var size: ByteSize?

    @Flag(help: "Overwrite an existing xv6 file system.")
    var force = false

    @Option(help: "Number of inodes (default: one per four blocks, at least 64).")
    var inodes: UInt32?

    @Option(name: .customShort("O"),
            help: ArgumentHelp("Format features to set, comma-separated (\(Feature.all.map(\.name).joined(separator: ", "))); "
                               + "^name clears one. Default: none.", valueName: "feature,..."))
    var features: String?

    @Flag(name: .shortAndLong, help: "Print nothing but errors.")
    var quiet = false

    @Argument(help: "The image file or block device.")
    var image: String

    func validate() throws {
        if let inodes, inodes < 2 || inodes > UInt32.max / 2 {
            throw ValidationError("--inodes must be between 2 and \(UInt32.max / 2)")
        }
        _ = try chosenFeatures()
    }

    /// The features -O asks for.
    private func chosenFeatures() throws -> FeatureSet {
        guard let features else { return .none }
        do { return try FeatureSet.none.applying(features) } catch { throw ValidationError("-O: \(error)") }
    }

    func run() throws {
        do {
            try make()
        } catch {
            printError("mkfs.xv6: \(error)")
            throw ExitCode(1)
        }
    }

    private func make() throws(ImageFileError) {
        let target = try inspectTarget(image)
        let blockSize = UInt64(Layout.blockSize)
        var blocks: UInt64?
        switch target {
        case .missing: blocks = (size?.bytes ?? Self.defaultSize) / blockSize
        case .regularFile(let bytes): blocks = (size?.bytes ?? bytes) / blockSize
        case .blockDevice: blocks = size.map { $0.bytes / blockSize }
        }
        if let blocks { try checkFits(blocks) }
        if let size, size.bytes % blockSize != 0, !quiet {
            print("mkfs.xv6: note: size rounded down to whole \(blockSize)-byte blocks")
        }

        // Nothing may change before these refusals. The image's lock is
        // held from here until exit.
        if case .missing = target {} else {
            do { try ImageHold.take(image) } catch {
                throw .message("\(error); not formatting it, even with --force")
            }
            if !force { try refuseExistingFileSystem() }
        }

        var created = false
        switch target {
        case .missing:
            try createImageFile(image, bytes: blocks! * blockSize)
            created = true
            try? ImageHold.take(image)
        case .regularFile(let bytes):
            if size != nil && bytes != blocks! * blockSize { try resizeImageFile(image, bytes: blocks! * blockSize) }
        case .blockDevice:
            break
        }
        do {
            try format(limit: blocks)
        } catch {
            if created { unlink(image) }
            throw error
        }
    }

    private func format(limit: UInt64?) throws(ImageFileError) {
        let file: FileBlockDevice
        do { file = try FileBlockDevice(path: image) } catch { throw .message("\(error)") }
        var device: any BlockDevice = file
        if let limit {
            guard limit <= file.blockCount else {
                throw .message("\(image) holds only \(ByteSize.format(file.blockCount * UInt64(Layout.blockSize))), "
                               + "less than the size asked for")
            }
            if limit < file.blockCount { device = LimitedBlockDevice(file, blockCount: limit) }
        } else {
            try checkFits(file.blockCount)
        }
        let sb: Superblock
        let progress = quiet || isatty(STDOUT_FILENO) == 0 ? nil : FormatProgress(image: image)
        do {
            sb = try Format.format(device, inodeCount: inodes, features: (try? chosenFeatures()) ?? .none, now: Self.now(), progress: progress.map { p in { p.show(written: $0, total: $1) } })
        } catch {
            progress?.finish()
            throw .message("\(image): \(error)")
        }
        progress?.finish()
        if !quiet { printSummary(sb) }
    }

    private func refuseExistingFileSystem() throws(ImageFileError) {
        guard let device = try? FileBlockDevice(path: image, readOnly: true), Format.holdsFileSystem(device) else { return }
        throw .message("\(image) already holds an xv6 file system; use --force to overwrite it")
    }

    /// Fails with the reason if no layout fits `blocks` blocks.
    private func checkFits(_ blocks: UInt64) throws(ImageFileError) {
        guard Superblock.plan(totalBlocks: blocks, inodeCount: inodes) == nil else { return }
        let have = ByteSize.format(blocks * UInt64(Layout.blockSize))
        guard blocks <= UInt64(UInt32.max) else {
            throw .message("\(have) is too large: xv6fs holds at most \(UInt32.max) blocks of \(Layout.blockSize) bytes "
                           + "(just under 16 TiB: block numbers are 32 bits on disk); use --size to format less")
        }
        let inodeText = inodes.map { " with \($0) inodes" } ?? ""
        guard let least = Self.smallestFit(inodes: inodes) else {
            throw .message("no xv6fs layout fits\(inodeText)")
        }
        throw .message("\(have) is too small for xv6fs\(inodeText): it needs at least "
                       + "\(least) blocks (\(ByteSize.format(least * UInt64(Layout.blockSize))))")
    }

    /// The fewest blocks a layout fits in (the plan fits every larger size too).
    static func smallestFit(inodes: UInt32?) -> UInt64? {
        var low: UInt64 = 1
        var high = UInt64(UInt32.max)
        guard Superblock.plan(totalBlocks: high, inodeCount: inodes) != nil else { return nil }
        while low < high {
            let middle = low + (high - low) / 2
            if Superblock.plan(totalBlocks: middle, inodeCount: inodes) != nil { high = middle } else { low = middle + 1 }
        }
        return low
    }

    private func printSummary(_ sb: Superblock) {
        let bytes = sb.totalBlocks * UInt64(Layout.blockSize)
        let dataBlocks = sb.totalBlocks - UInt64(sb.dataStart)
        print("""
            \(image): xv6fs, \(ByteSize.format(bytes))
              blocks:       \(sb.totalBlocks) of \(Layout.blockSize) bytes
              inodes:       \(sb.inodeCount) (\(sb.inodeBlocks) blocks from block \(sb.inodeStart))
              log blocks:   \(sb.logBlocks) (header at block \(sb.logStart))
              bitmap:       \(sb.bitmapBlocks) block(s) from block \(sb.bitmapStart)
              data blocks:  \(dataBlocks) from block \(sb.dataStart) (1 holds the root directory)
              uuid:         \(hex(sb.uuid.0))\(hex(sb.uuid.1))
              features:     \(sb.features.description)
            """)
    }

    private func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    static func now() -> Timespec {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Timespec(seconds: Int64(time.tv_sec), nanoseconds: UInt32(time.tv_nsec))
    }
}
