import BentoWorker
import Testing

struct MountSettingsTests {
    @Test func aNewModuleIsNotANewMount() {
        let a = MountSettings(image: "/i", mountpoint: "/mnt/a", module: "/m/1.so")
        var b = a
        b.module = "/m/2.so"
        #expect(a.sameMount(as: b))
        b.threads = 4
        #expect(!a.sameMount(as: b))
        var c = a
        c.hangLimitSeconds = 5
        #expect(!a.sameMount(as: c))
    }
}
