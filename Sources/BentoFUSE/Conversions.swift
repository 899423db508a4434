import BentoKit
import CFuse3
import Glibc

/// Module values to the C structures libfuse replies with, and back.
enum Convert {
    static func stat(_ a: FileAttributes) -> Glibc.stat {
        var st = Glibc.stat()
        st.st_ino = UInt(a.ino)
        st.st_mode = a.mode
        st.st_nlink = UInt(a.nlink)
        st.st_uid = a.uid
        st.st_gid = a.gid
        st.st_rdev = UInt(a.rdev)
        st.st_size = Int(bitPattern: UInt(a.size))
        st.st_blksize = Int(a.blockSize)
        st.st_blocks = Int(bitPattern: UInt(a.blocks))
        st.st_atim = timespec(a.atime)
        st.st_mtim = timespec(a.mtime)
        st.st_ctim = timespec(a.ctime)
        return st
    }

    static func timespec(_ t: Timespec) -> Glibc.timespec {
        Glibc.timespec(tv_sec: Int(t.seconds), tv_nsec: Int(t.nanoseconds))
    }

    static func timespec(_ t: Glibc.timespec) -> Timespec {
        Timespec(seconds: Int64(t.tv_sec), nanoseconds: UInt32(clamping: t.tv_nsec))
    }

    static func entry(_ e: Entry, timeout: Double, attributeTimeout: Double? = nil) -> fuse_entry_param {
        var p = fuse_entry_param()
        p.ino = e.ino
        p.generation = e.generation
        p.attr = stat(e.attributes)
        p.attr_timeout = attributeTimeout ?? timeout
        p.entry_timeout = timeout
        return p
    }

    static func statvfs(_ s: FileSystemStats) -> Glibc.statvfs {
        var v = Glibc.statvfs()
        v.f_bsize = UInt(s.blockSize)
        v.f_frsize = UInt(s.blockSize)
        v.f_blocks = UInt(s.blocks)
        v.f_bfree = UInt(s.freeBlocks)
        v.f_bavail = UInt(s.availableBlocks)
        v.f_files = UInt(s.files)
        v.f_ffree = UInt(s.freeFiles)
        v.f_favail = UInt(s.freeFiles)
        v.f_namemax = UInt(s.nameMax)
        return v
    }

    /// A NUL-terminated name from libfuse as the module's FileName.
    static func name(_ c: UnsafePointer<CChar>?) -> FileName {
        guard let c else { return FileName([]) }
        return FileName(Array(UnsafeRawBufferPointer(start: c, count: strlen(c))))
    }

    static func context(_ req: fuse_req_t?) -> RequestContext {
        guard let ctx = fuse_req_ctx(req) else { return .root }
        return RequestContext(uid: ctx.pointee.uid, gid: ctx.pointee.gid, pid: ctx.pointee.pid)
    }

    static func setAttributes(_ st: UnsafeMutablePointer<Glibc.stat>?, _ toSet: Int32) -> SetAttributes {
        var changes = SetAttributes()
        guard let st = st?.pointee else { return changes }
        if toSet & FUSE_SET_ATTR_MODE != 0 { changes.mode = st.st_mode }
        if toSet & FUSE_SET_ATTR_UID != 0 { changes.uid = st.st_uid }
        if toSet & FUSE_SET_ATTR_GID != 0 { changes.gid = st.st_gid }
        if toSet & FUSE_SET_ATTR_SIZE != 0 { changes.size = UInt64(max(st.st_size, 0)) }
        if toSet & FUSE_SET_ATTR_ATIME_NOW != 0 { changes.atime = .now }
        else if toSet & FUSE_SET_ATTR_ATIME != 0 { changes.atime = .at(timespec(st.st_atim)) }
        if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 { changes.mtime = .now }
        else if toSet & FUSE_SET_ATTR_MTIME != 0 { changes.mtime = .at(timespec(st.st_mtim)) }
        if toSet & FUSE_SET_ATTR_CTIME != 0 { changes.ctime = timespec(st.st_ctim) }
        return changes
    }
}
