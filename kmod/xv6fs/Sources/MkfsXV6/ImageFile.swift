import Glibc

/// What is at the image path before formatting.
enum ImageTarget {
    case missing
    case regularFile(bytes: UInt64)
    case blockDevice
}

enum ImageFileError: Error, CustomStringConvertible {
    case message(String)
    var description: String {
        switch self { case .message(let text): text }
    }
}

func systemError() -> String { String(cString: strerror(errno)) }

/// Looks at the path without changing anything.
func inspectTarget(_ path: String) throws(ImageFileError) -> ImageTarget {
    var info = stat()
    guard stat(path, &info) == 0 else {
        if errno == ENOENT { return .missing }
        throw .message("cannot access \(path): \(systemError())")
    }
    switch info.st_mode & S_IFMT {
    case S_IFREG: return .regularFile(bytes: UInt64(max(info.st_size, 0)))
    case S_IFBLK: return .blockDevice
    case S_IFDIR: throw .message("\(path) is a directory")
    default: throw .message("\(path) is neither a regular file nor a block device")
    }
}

/// Creates a new image file of `bytes` bytes (sparse).
func createImageFile(_ path: String, bytes: UInt64) throws(ImageFileError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw .message("cannot create \(path): \(systemError())") }
    defer { close(fd) }
    guard ftruncate(fd, off_t(bytes)) == 0 else {
        let reason = systemError()
        unlink(path)
        throw .message("cannot make \(path) \(bytes) bytes long: \(reason)")
    }
}

/// Grows or shrinks an existing regular file to `bytes` bytes.
func resizeImageFile(_ path: String, bytes: UInt64) throws(ImageFileError) {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .message("cannot open \(path): \(systemError())") }
    defer { close(fd) }
    guard ftruncate(fd, off_t(bytes)) == 0 else {
        throw .message("cannot resize \(path) to \(bytes) bytes: \(systemError())")
    }
}
