@testable import BentoDaemon
import BentoControl
import Foundation
import Testing

struct StateStoreTests {
    func directory() -> String {
        let path = NSTemporaryDirectory() + "bento-state-\(UUID().uuidString)"
        return path
    }

    @Test func recordsSurviveAReopen() throws {
        let dir = directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try StateStore(directory: dir)
        store.update("/mnt/a") {
            $0 = StateStore.MountRecord(module: "/m/2.so", configModule: "/m/1.so", previous: "/m/1.so",
                                        upgradingFrom: nil, failedModules: ["/m/3.so": "SIGILL in create"])
        }
        store.appendHistory(UpgradeReport(result: UpgradeReport.upgraded, action: .upgrade, mountpoint: "/mnt/a"))
        store.appendHistory(UpgradeReport(result: UpgradeReport.refused, action: .upgrade, mountpoint: "/mnt/b"))
        let again = try StateStore(directory: dir)
        #expect(again.record("/mnt/a")?.module == "/m/2.so")
        #expect(again.record("/mnt/a")?.failedModules?["/m/3.so"] == "SIGILL in create")
        #expect(again.history(mountpoint: "/mnt/a").count == 1)
        #expect(again.history(mountpoint: nil).count == 2)
    }

    @Test func aCorruptRecordFileIsRefusedNotForgotten() throws {
        let dir = directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: dir + "/mounts.json"))
        #expect(throws: StateStore.Failure.self) { try StateStore(directory: dir) }
    }
}
