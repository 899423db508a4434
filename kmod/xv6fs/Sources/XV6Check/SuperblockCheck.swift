import BentoKit
import XV6Layout

/// Why an image cannot be checked at all.
struct OperationalError: Error {
    var message: String
}

/// Reads and validates block 1. Any failure here is an operational error:
/// without a trustworthy superblock nothing else can be located.
func loadSuperblock(_ device: any BlockDevice) -> Result<Superblock, OperationalError> {
    guard device.blockSize == Layout.blockSize else {
        return .failure(OperationalError(message: "device block size is \(device.blockSize), xv6fs needs \(Layout.blockSize)"))
    }
    guard device.blockCount > Layout.superblockNumber else {
        return .failure(OperationalError(message: "not an xv6 image: the device is too small"))
    }
    let reader = ImageReader(device: device)
    guard let block = reader.readDevice(Layout.superblockNumber) else {
        return .failure(OperationalError(message: "cannot read the superblock (I/O error)"))
    }
    // Superblock.plan adds to the inode count in 32 bits; keep a (checksummed
    // but) absurd count away from it rather than trap.
    let inodeCount = block.u32(24)
    if block.u64(0) == Layout.magic, inodeCount > UInt32.max - UInt32(Layout.inodesPerBlock) {
        return .failure(OperationalError(message: "superblock inconsistent: inode count \(inodeCount)"))
    }
    let decoded = block.withUnsafeBytes { decodeSuperblock($0, deviceBlocks: device.blockCount) }
    switch decoded {
    case .success(let superblock):
        return .success(superblock)
    case .failure(.notXv6):
        return .failure(OperationalError(message: "not an xv6 image (no xv6fs superblock)"))
    case .failure(let error):
        return .failure(OperationalError(message: error.description))
    }
}

/// Superblock.decode as a Result (a plain function: typed throws inside
/// closures trips the compiler).
func decodeSuperblock(_ buffer: UnsafeRawBufferPointer,
                              deviceBlocks: UInt64) -> Result<Superblock, Superblock.DecodeError> {
    do throws(Superblock.DecodeError) {
        return .success(try Superblock.decode(buffer, deviceBlocks: deviceBlocks))
    } catch {
        return .failure(error)
    }
}
