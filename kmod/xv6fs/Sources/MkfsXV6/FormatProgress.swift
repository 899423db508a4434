import Glibc

/// mkfs.xv6's progress line on a terminal: shown only once a format has
/// taken more than a second (MKFS_XV6_PROGRESS_DELAY seconds, for tests),
/// updated when the percentage changes, and cleared at the end.
final class FormatProgress {
    let image: String
    private let start = FormatProgress.seconds()
    private let delay: Double
    private var shownPercent = -1

    init(image: String) {
        self.image = image
        delay = getenv("MKFS_XV6_PROGRESS_DELAY").flatMap { Double(String(cString: $0)) } ?? 1
    }

    func show(written: UInt64, total: UInt64) {
        let percent = Int(written * 100 / max(total, 1))
        guard percent != shownPercent, Self.seconds() - start >= delay else { return }
        shownPercent = percent
        put("\rmkfs.xv6: formatting \(image): \(percent)% (\(written)/\(total) blocks)")
    }

    func finish() {
        guard shownPercent >= 0 else { return }
        put("\r\u{1B}[K")
    }

    private func put(_ text: String) {
        _ = text.withCString { write(STDOUT_FILENO, $0, strlen($0)) }
    }

    private static func seconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
