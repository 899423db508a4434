import Testing
@testable import BentoFUSE

/// Which kernels drop the cached pages a direct write overwrites
/// (DirectWrites): write-only handles write past the page cache only there.
@Suite struct DirectWritesTests {
    @Test func kernelsWithTheInvalidation() {
        for release in ["6.19.0", "6.19", "7.0.1", "6.18.3", "6.18.44-fc-v1272", "6.12.64", "6.12.70-amd64", "6.20-rc1"] {
            #expect(DirectWrites.dropsOverwrittenPages(release: release), "\(release)")
        }
    }

    @Test func kernelsWithout() {
        for release in ["6.18.2", "6.18", "6.12.63", "6.12", "6.1.0-28-amd64", "6.6.90", "5.15.0", "6.17.9", "4.19.1"] {
            #expect(!DirectWrites.dropsOverwrittenPages(release: release), "\(release)")
        }
    }

    @Test func unreadableReleases() {
        for release in ["", "linux", "6", ".18.3", "x6.19"] {
            #expect(!DirectWrites.dropsOverwrittenPages(release: release), "\(release)")
        }
    }
}
