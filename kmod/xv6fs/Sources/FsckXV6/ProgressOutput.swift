import Glibc
import XV6Check

/// Where `-C` sends the check's progress: e2fsck's completion lines
/// ("pass current total device") to an fd, or for fd 0 a bar on standard
/// output. Lines are written when the per-mille done changes, and at each
/// pass's end, so a big image does not flood the reader.
final class ProgressOutput: @unchecked Sendable {  // used by the checking thread alone
    let fd: Int32
    let device: String
    private var last: (pass: Int, permille: Int) = (0, -1)
    private var barShown = false

    init(fd: Int32, device: String) {
        self.fd = fd
        self.device = device
    }

    func show(_ progress: CheckProgress) {
        let within = progress.total == 0 ? 1000 : Int(min(progress.current, progress.total) * 1000 / progress.total)
        let permille = fd == 0 ? Int(progress.fraction * 1000) : within
        guard progress.pass != last.pass || permille != last.permille else { return }
        last = (progress.pass, permille)
        if fd == 0 {
            drawBar(permille)
        } else {
            put(fd, "\(progress.pass) \(progress.current) \(progress.total) \(device)\n")
        }
    }

    /// Clears the bar, so that the findings start on a clean line.
    func finish() {
        guard barShown else { return }
        put(1, "\r" + String(repeating: " ", count: device.count + 52) + "\r")
        barShown = false
    }

    private func drawBar(_ permille: Int) {
        let width = 40
        let filled = permille * width / 1000
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        put(1, "\r\(device): |\(bar)| \(permille / 10).\(permille % 10)%")
        barShown = true
    }

    private func put(_ fd: Int32, _ text: String) {
        _ = text.withCString { write(fd, $0, strlen($0)) }
    }
}
