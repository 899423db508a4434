@testable import BentoDaemon
import Testing

struct FdStoreTests {
    @Test func namesRoundTripAnyMountpoint() {
        for mountpoint in ["/mnt/a", "/srv/with space", "/odd:colon%percent", "/ünï"] {
            for kind in FdStore.Kind.allCases {
                let name = FdStore.name(kind, mountpoint)
                #expect(!name.contains(":") && !name.contains(" "))
                let parsed = FdStore.parse(name)
                #expect(parsed?.0 == kind && parsed?.1 == mountpoint)
            }
        }
        #expect(FdStore.parse("other@/mnt/a") == nil)
        #expect(FdStore.parse("no-at-sign") == nil)
    }
}
