import BentoKit
import Testing
import XV6Check

/// Expects fsck.xv6's checker (read-only) to find the device clean.
func expectClean(_ device: any BlockDevice, _ comment: Comment) throws {
    let report = Checker(readOnly: true).check(device)
    #expect(report.isClean, "\(comment): \(report)")
}
