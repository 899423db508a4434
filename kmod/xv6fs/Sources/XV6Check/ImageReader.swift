import BentoKit
import XV6Layout

/// Block access for the checker. Reads see a pending log transaction laid
/// over the device, that is the image as it will be after replay; writes
/// (repairs) go straight to the device.
final class ImageReader {
    let device: any BlockDevice
    /// Home block -> contents that the log will put there.
    var overlay: [UInt64: [UInt8]] = [:]

    init(device: any BlockDevice) {
        self.device = device
    }

    /// The block as the checker should see it; nil on an I/O error.
    func read(_ block: UInt64) -> [UInt8]? {
        if let pending = overlay[block] { return pending }
        return readDevice(block)
    }

    /// The block as it is on the device, ignoring the log.
    func readDevice(_ block: UInt64) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: Layout.blockSize)
        let ok = bytes.withUnsafeMutableBytes { buffer in
            (try? device.read(block: block, into: buffer)) != nil
        }
        return ok ? bytes : nil
    }

    func write(_ block: UInt64, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { buffer in (try? device.write(block: block, from: buffer)) != nil }
    }

    func flush() -> Bool {
        (try? device.flush()) != nil
    }
}
