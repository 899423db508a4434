import BentoServices
import Testing
@testable import XV6ToolSupport

@Suite struct ImageUseTests {
    static let served = "91 36 0:55 / /mnt/my\\040disk rw shared:5 - fuse.xv6 /var/lib/bento/x.img rw,user_id=0"

    @Test func describesWhoUsesAnImage() {
        let entry = MountTable.parse(Self.served).entries[0]
        let served = ImageUse(path: "x.img", locked: true, mounts: [entry])
        #expect(served.description == "x.img is in use: bento-upgraded serves it at /mnt/my disk")
        #expect(ImageUse(path: "x.img", locked: true, mounts: []).description.contains("holds its lock"))
        #expect(ImageUse(path: "x.img", locked: false, mounts: [entry]).description.contains("mounted at /mnt/my disk"))
        #expect(!ImageUse(path: "x.img", locked: false, mounts: []).inUse)
    }
}

@Suite struct ProgressOptionTests {
    @Test func aBareProgressOptionMeansStandardOutput() {
        #expect(ProgressOption.normalized(["-C", "img"]) == ["-C0", "img"])
        #expect(ProgressOption.normalized(["-p", "-C"]) == ["-p", "-C0"])
        #expect(ProgressOption.normalized(["-C", "3", "img"]) == ["-C", "3", "img"])
        #expect(ProgressOption.normalized(["-C5", "img"]) == ["-C5", "img"])
        #expect(ProgressOption.normalized(["--", "-C"]) == ["--", "-C"])
    }
}
