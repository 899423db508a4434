/// An errno value: the only kind of error that crosses the module boundary.
@frozen
public struct Errno: Error, Equatable, Hashable, CustomStringConvertible {
    public var rawValue: Int32
    @inlinable public init(_ rawValue: Int32) { self.rawValue = rawValue }

    // Linux values, spelled out so the SDK needs no C module.
    public static let EPERM = Errno(1)
    public static let ENOENT = Errno(2)
    public static let EIO = Errno(5)
    public static let ENXIO = Errno(6)
    public static let E2BIG = Errno(7)
    public static let EBADF = Errno(9)
    public static let ENOMEM = Errno(12)
    public static let EACCES = Errno(13)
    public static let EBUSY = Errno(16)
    public static let EEXIST = Errno(17)
    public static let EXDEV = Errno(18)
    public static let ENOTDIR = Errno(20)
    public static let EISDIR = Errno(21)
    public static let EINVAL = Errno(22)
    public static let EFBIG = Errno(27)
    public static let ENOSPC = Errno(28)
    public static let EROFS = Errno(30)
    public static let EMLINK = Errno(31)
    public static let ERANGE = Errno(34)
    public static let ENAMETOOLONG = Errno(36)
    public static let ENOSYS = Errno(38)
    public static let ENOTEMPTY = Errno(39)
    public static let ELOOP = Errno(40)
    public static let ENODATA = Errno(61)
    public static let EOVERFLOW = Errno(75)
    public static let EOPNOTSUPP = Errno(95)
    public static let ETIMEDOUT = Errno(110)
    /// "Structure needs cleaning": what a file system answers when it finds
    /// its on-disk structures inconsistent.
    public static let EUCLEAN = Errno(117)

    public var description: String {
        switch rawValue {
        case 1: "EPERM"; case 2: "ENOENT"; case 5: "EIO"; case 6: "ENXIO"; case 7: "E2BIG"; case 9: "EBADF"
        case 12: "ENOMEM"; case 13: "EACCES"; case 16: "EBUSY"; case 17: "EEXIST"; case 18: "EXDEV"; case 20: "ENOTDIR"
        case 21: "EISDIR"; case 22: "EINVAL"; case 27: "EFBIG"; case 28: "ENOSPC"
        case 30: "EROFS"; case 31: "EMLINK"; case 34: "ERANGE"; case 36: "ENAMETOOLONG"
        case 38: "ENOSYS"; case 39: "ENOTEMPTY"; case 40: "ELOOP"; case 61: "ENODATA"; case 75: "EOVERFLOW"
        case 95: "EOPNOTSUPP"; case 110: "ETIMEDOUT"; case 117: "EUCLEAN"
        default: "errno \(rawValue)"
        }
    }
}
