@testable import BentoFUSE
import Testing

@Suite struct SpaceGuardTests {
    let MiB: UInt64 = 1 << 20

    @Test func checksUntilFreeSpaceIsKnownThenByTheReserve() {
        let space = SpaceGuard(reserve: 48 * MiB)
        #expect(space.isLow)
        space.opened(7)
        #expect(space.looked(free: 60 * MiB).isEmpty)
        #expect(!space.isLow)
        #expect(space.looked(free: 47 * MiB) == [7])  // checking begins: file 7 must ask again
        #expect(space.isLow)
        #expect(space.looked(free: 49 * MiB).isEmpty)
        #expect(space.isLow)  // not yet: a little above the reserve first
        _ = space.looked(free: 52 * MiB)
        #expect(!space.isLow)
    }

    @Test func looksAgainOnceHalfTheRoomAboveTheReserveMayBeGone() {
        let space = SpaceGuard(reserve: 10 * MiB)
        _ = space.looked(free: 30 * MiB)
        #expect(!space.received(1, bytes: 9 * MiB))
        #expect(space.received(1, bytes: 1 * MiB))
        _ = space.looked(free: 5 * MiB)
        #expect(space.received(1, bytes: 4096))  // checking: every write
    }

    @Test func aWriterIsRefusedWhenItsNextWriteWouldNotFit() {
        let space = SpaceGuard(reserve: 48 * MiB)
        _ = space.looked(free: 8 * MiB)
        space.opened(1)
        #expect(space.allows(1, free: 8 * MiB))  // nothing sent yet: a first write
        _ = space.received(1, bytes: 1 * MiB)
        #expect(space.allows(1, free: 1 * MiB + SpaceGuard.slack))  // its last write was 1 MiB
        _ = space.received(1, bytes: 1 * MiB)
        #expect(!space.allows(1, free: MiB))
        #expect(!space.allows(1, free: MiB - 4096))  // refused again, though it sent nothing since
        #expect(space.allows(1, free: 2 * MiB))  // room came back (a delete)
    }

    @Test func otherWritersLastWritesAreCounted() {
        let space = SpaceGuard(reserve: 48 * MiB)
        _ = space.looked(free: 8 * MiB)
        for ino: UInt64 in 1...3 { space.opened(ino); _ = space.received(ino, bytes: MiB) }
        let room = 3 * MiB + SpaceGuard.slack
        #expect(space.allows(1, free: room))
        #expect(space.allows(2, free: room))
        #expect(space.allows(3, free: room))
        _ = space.received(3, bytes: MiB)
        #expect(!space.allows(3, free: room - 1))  // 1 and 2 may each hold a write in the cache
        space.released(1)
        space.released(2)
        #expect(space.allows(3, free: MiB + SpaceGuard.slack))
    }

    @Test func aModuleThatStoresMoreThanTheDataIsGivenMoreRoom() {
        let space = SpaceGuard(reserve: 48 * MiB)
        _ = space.looked(free: 8 * MiB)
        space.opened(1)
        _ = space.received(1, bytes: MiB)
        _ = space.looked(free: 6 * MiB)  // 1 MiB written took 2 MiB
        #expect(!space.allows(1, free: 2 * MiB))
        #expect(space.allows(1, free: 2 * MiB + SpaceGuard.slack))
    }

    @Test func withoutAWriteBackAllTheKernelMayHoldCounts() {
        let space = SpaceGuard(reserve: 48 * MiB)
        _ = space.looked(free: 40 * MiB)
        space.opened(1)
        _ = space.received(1, bytes: MiB)
        #expect(!space.allows(1, free: 40 * MiB, dirtyKnown: false))
        #expect(space.allows(1, free: 40 * MiB))
    }

    @Test func readersAndUnknownFilesAreNeverRefused() {
        let space = SpaceGuard(reserve: 48 * MiB)
        _ = space.looked(free: 0)
        #expect(space.allows(9, free: 0))
        space.opened(9)
        #expect(space.allows(9, free: 0))  // open for writing, but not writing
        #expect(space.writerInodes == [9])
        space.released(9)
        #expect(space.writerInodes.isEmpty)
    }

    @Test func aHandleFromBeforeARestartIsKnownByItsWritesAndEndsAtRelease() {
        let space = SpaceGuard(reserve: 48 * MiB)
        _ = space.looked(free: 4 * MiB)
        _ = space.received(5, bytes: MiB)
        #expect(space.writerInodes == [5])
        #expect(!space.allows(5, free: MiB))
        space.released(5)
        #expect(space.writerInodes.isEmpty)
    }
}
