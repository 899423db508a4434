@_spi(Host) import BentoKit
import Testing

/// The host's table of what the kernel holds, which every instance of a
/// mount shares.
@Suite struct KernelReferencesTests {
    let who = RequestContext(uid: 7, gid: 8, pid: 9)

    @Test func lookupsAndHandlesCountPerInode() {
        let table = KernelReferences()
        table.lookedUp(5)
        table.lookedUp(5)
        let a = table.open(.init(ino: 5, flags: 2, isDirectory: false, opener: who))
        let b = table.open(.init(ino: 5, flags: 0, isDirectory: false, opener: who))
        #expect(a != b)
        #expect(table.counts(5) == .init(lookups: 2, opens: 2))
        #expect(table.file(a)?.flags == 2 && table.file(a)?.opener.pid == 9)
        #expect(table.forgot(5, count: 2) == .init(lookups: 0, opens: 2))
        #expect(table.close(a)?.1 == .init(lookups: 0, opens: 1))
        #expect(table.close(a) == nil)
        #expect(table.isHeld(5))
        #expect(table.close(b)?.1 == .init(lookups: 0, opens: 0))
        #expect(!table.isHeld(5))
        #expect(table.size == (0, 0))
        // A forget larger than the count, or of an inode never counted, is harmless.
        #expect(table.forgot(6, count: 3) == .init())
    }

    @Test func closeAllEndsEveryHandleOnAnInode() {
        let table = KernelReferences()
        let handles = (0..<3).map { _ in table.open(.init(ino: 9, flags: 0, isDirectory: false, opener: who)) }
        let other = table.open(.init(ino: 10, flags: 0, isDirectory: true, opener: who))
        table.lookedUp(9)
        #expect(table.closeAll(on: 9) == 3)
        #expect(handles.allSatisfy { table.file($0) == nil })
        #expect(table.counts(9) == .init(lookups: 1, opens: 0))
        #expect(table.file(other)?.isDirectory == true)
    }

    @Test func aReplacedTableKeepsHandlesAboveEveryOldOne() {
        let old = KernelReferences()
        let handle = old.open(.init(ino: 3, flags: 0, isDirectory: false, opener: who))
        old.lookedUp(4)
        let snapshot = old.snapshot()
        let new = KernelReferences()
        new.replace(with: snapshot)
        #expect(new.snapshot().counts == snapshot.counts && new.snapshot().files == snapshot.files)
        // Where new handles start: above the old ones, wherever this table's own start was.
        #expect(new.snapshot().nextHandle >= snapshot.nextHandle)
        #expect(new.file(handle) != nil)
        #expect(new.open(.init(ino: 3, flags: 0, isDirectory: false, opener: who)) > handle)
    }

    @Test func threadsCountWithoutLosingAny() async {
        let table = KernelReferences()
        await withTaskGroup(of: Void.self) { group in
            for t in 0..<4 {
                group.addTask {
                    for i in 0..<2_000 {
                        let ino = InodeNumber(i % 50)
                        table.lookedUp(ino)
                        let h = table.open(.init(ino: ino, flags: Int32(t), isDirectory: false, opener: RequestContext.root))
                        _ = table.close(h)
                        table.forgot(ino, count: 1)
                    }
                }
            }
        }
        #expect(table.size == (0, 0))
    }
}

/// What a module reports it changed by itself, waiting for the host.
@Suite struct KernelCacheTests {
    @Test func changesWaitOnceEachUntilTaken() {
        let cache = KernelCache()
        cache.inodeChanged(7)
        cache.entryChanged(parent: 1, name: ".provenance")
        cache.inodeChanged(7)
        cache.entryChanged(parent: 1, name: ".provenance")
        #expect(cache.waitForChanges() == [.inode(7), .entry(parent: 1, name: Array(".provenance".utf8))])
        cache.inodeChanged(8)
        #expect(cache.waitForChanges() == [.inode(8)])
    }

    @Test func aWaitingHostWakesAtTheFirstChange() async {
        let cache = KernelCache()
        async let taken = Task.detached { cache.waitForChanges() }.value
        try? await Task.sleep(nanoseconds: 20_000_000)
        cache.inodeChanged(3)
        #expect(await taken == [.inode(3)])
    }
}
