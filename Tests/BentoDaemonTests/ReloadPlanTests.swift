@testable import BentoDaemon
import BentoWorker
import Testing

struct ReloadPlanTests {
    let a = MountSettings(image: "/i/a", mountpoint: "/mnt/a", module: "/m/1.so")
    let b = MountSettings(image: "/i/b", mountpoint: "/mnt/b", module: "/m/1.so")
    let c = MountSettings(image: "/i/c", mountpoint: "/mnt/c", module: "/m/1.so")

    @Test func addedStartsRemovedStopsTheRestIsLeftAlone() {
        let plan = ReloadPlan(serving: [a, b], wanted: [a, c])
        #expect(plan.unchanged == ["/mnt/a"])
        #expect(plan.stop == ["/mnt/b"])
        #expect(plan.start == [c])
    }

    @Test func aChangedSettingRestartsTheMountANewModuleDoesNot() {
        var upgraded = a, bigger = b
        upgraded.module = "/m/2.so"
        bigger.cacheMiB = 1024
        let plan = ReloadPlan(serving: [a, b], wanted: [upgraded, bigger])
        #expect(plan.unchanged == ["/mnt/a"])
        #expect(plan.stop == ["/mnt/b"])
        #expect(plan.start == [bigger])
    }

    @Test func anEmptyConfigStopsEverything() {
        let plan = ReloadPlan(serving: [a, b], wanted: [])
        #expect(plan.stop == ["/mnt/a", "/mnt/b"] && plan.start.isEmpty && plan.unchanged.isEmpty)
    }
}
