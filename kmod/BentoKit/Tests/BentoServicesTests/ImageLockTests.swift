import BentoServices
import Glibc
import Testing

@Suite struct ImageLockTests {
    let path: String

    init() {
        var template = Array("/tmp/bento-lock-test.XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        close(fd)
        path = String(cString: template)
    }

    func openImage() -> Int32 { open(path, O_RDWR | O_CLOEXEC) }

    @Test func anotherOpenFileDescriptionIsRefused() {
        defer { unlink(path) }
        let first = openImage(), second = openImage()
        defer { close(first); close(second) }
        #expect(ImageLock.isHeldElsewhere(second) == false)
        #expect(ImageLock.lock(first) == .locked)
        #expect(ImageLock.isHeldElsewhere(second) == true)
        #expect(ImageLock.isHeld(path: path) == true)
        #expect(ImageLock.lock(second) == .heldElsewhere)
        // The holder itself may lock again.
        #expect(ImageLock.lock(first) == .locked)
    }

    @Test func aDupKeepsTheLockUntilTheLastFdCloses() {
        defer { unlink(path) }
        let first = openImage()
        #expect(ImageLock.lock(first) == .locked)
        let copy = dup(first)
        close(first)
        #expect(ImageLock.isHeld(path: path) == true)
        close(copy)
        #expect(ImageLock.isHeld(path: path) == false)
    }

    @Test func missingImageCannotTell() {
        #expect(ImageLock.isHeld(path: "/nonexistent/bento.img") == nil)
    }
}
