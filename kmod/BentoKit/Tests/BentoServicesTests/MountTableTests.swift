import Testing
@testable import BentoServices

@Suite struct MountTableTests {
    static let text = """
        22 1 0:21 / /proc rw,nosuid - proc proc rw
        36 35 98:0 / / rw,noatime master:1 - ext4 /dev/sda1 rw
        91 36 0:55 / /mnt/my\\040disk rw,nosuid,nodev shared:5 - fuse.xv6 /var/lib/bento/my\\040disk.img rw,user_id=0
        bad line
        """

    @Test func parsesFieldsAndEscapes() {
        let table = MountTable.parse(Self.text)
        #expect(table.entries.count == 3)
        let fuse = table.entries[2]
        #expect(fuse.mountpoint == "/mnt/my disk")
        #expect(fuse.type == "fuse.xv6")
        #expect(fuse.source == "/var/lib/bento/my disk.img")
        #expect(fuse.device == (0, 55))
        #expect(table.entries[1].device == (98, 0))
    }

    @Test func findsAnImageBySource() {
        let table = MountTable.parse(Self.text)
        #expect(table.mounts(of: "/var/lib/bento/my disk.img").map(\.mountpoint) == ["/mnt/my disk"])
        #expect(table.mounts(of: "/var/lib/bento/other.img").isEmpty)
    }

    @Test func theTopmostMountIsTheLastListed() {
        let text = Self.text + "\n97 91 0:60 / /mnt/my\\040disk rw - tmpfs none rw"
        #expect(MountTable.parse(text).top(at: "/mnt/my disk")?.type == "tmpfs")
        #expect(MountTable.parse(Self.text).top(at: "/mnt/my disk")?.type == "fuse.xv6")
        #expect(MountTable.parse(Self.text).top(at: "/mnt/none") == nil)
    }
}
