import BentoKit
import CFuse3
import Glibc

/// The libfuse operation table: one C callback per FUSE request, each
/// finding its server through the request's userdata.
extension FuseServer {
    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let userdata, let conn else { return }
            Unmanaged<FuseServer>.fromOpaque(userdata).takeUnretainedValue().negotiate(conn)
        }
        // A name that is not there is an answer the kernel may cache too.
        ops.lookup = { req, parent, name in
            let s = FuseServer.server(req)
            s.handle(req, .lookup) { fs, ctx in
                do {
                    s.replyEntry(req, try fs.lookup(ctx, parent: parent, name: Convert.name(name)))
                } catch let error as Errno where error == .ENOENT && s.cachesNames {
                    var p = fuse_entry_param()
                    p.entry_timeout = s.timeout
                    fuse_reply_entry(req, &p)
                }
            }
        }
        // FORGET has no reply: a thrown error could not be sent anyway.
        // Kept for later if there is room (DeferredForgets).
        ops.forget = { req, ino, count in
            let s = FuseServer.server(req)
            defer { s.forgets.done() }
            s.handle(req, .forget) { fs, _ in
                if !s.deferredForgets.keep(ino, count) { fs.forget(ino: ino, count: count) }
            }
            fuse_reply_none(req)
        }
        ops.forget_multi = { req, count, forgets in
            let s = FuseServer.server(req)
            defer { s.forgets.done() }
            s.handle(req, .forget) { fs, _ in
                for i in 0..<count {
                    guard let f = forgets?[i] else { continue }
                    if !s.deferredForgets.keep(f.ino, f.nlookup) { fs.forget(ino: f.ino, count: f.nlookup) }
                }
            }
            fuse_reply_none(req)
        }
        // With a file handle, the kernel may be about to write(): while
        // space is low, that write is checked here (SpaceChecks.swift).
        ops.getattr = { req, ino, fi in
            let s = FuseServer.server(req)
            let writeBack = fi == nil ? nil : s.writeBackBeforeCheck(ino)
            s.handle(req, .getattr) { fs, ctx in
                if let writeBack { try s.checkSpace(fs, ctx, ino: ino, writeBack) }
                var st = Convert.stat(try fs.getattr(ctx, ino: ino))
                // Asked with a handle while checking: maybe a writer this
                // process has not seen open (a worker before it did).
                fuse_reply_attr(req, &st, writeBack != nil ? 0 : s.attributeTimeout(ino))
            }
        }
        ops.setattr = { req, ino, attr, toSet, fi in
            let s = FuseServer.server(req)
            s.handle(req, .setattr) { fs, ctx in
                let handle = fi.map { $0.pointee.fh }
                let changes = try s.droppingSetID(Convert.setAttributes(attr, toSet), fs, ctx, ino: ino)
                var st = Convert.stat(try fs.setattr(ctx, ino: ino, changes, handle: handle))
                if toSet & FUSE_SET_ATTR_SIZE != 0 { s.noteSpaceFreed(fs, ctx) }
                fuse_reply_attr(req, &st, s.attributeTimeout(ino))
            }
        }
        ops.readlink = { req, ino in
            FuseServer.server(req).handle(req, .readlink) { fs, ctx in
                var target = try fs.readlink(ctx, ino: ino)
                target.append(0)
                target.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { _ = fuse_reply_readlink(req, $0.baseAddress) } }
            }
        }
        ops.mknod = { req, parent, name, mode, rdev in
            let s = FuseServer.server(req)
            s.handle(req, .mknod) { fs, ctx in
                let name = Convert.name(name)
                s.replyEntry(req, try s.retrying(.EEXIST) {
                    try fs.mknod(ctx, parent: parent, name: name, mode: mode, rdev: UInt32(truncatingIfNeeded: rdev))
                } alreadyDone: { try s.madeBefore(fs, ctx, parent: parent, name: name, otherwise: .EEXIST) })
            }
        }
        ops.mkdir = { req, parent, name, mode in
            let s = FuseServer.server(req)
            s.handle(req, .mkdir) { fs, ctx in
                let name = Convert.name(name)
                s.replyEntry(req, try s.retrying(.EEXIST) { try fs.mkdir(ctx, parent: parent, name: name, mode: mode) }
                             alreadyDone: { try s.madeBefore(fs, ctx, parent: parent, name: name, otherwise: .EEXIST) })
            }
        }
        // A resent unlink or rmdir that finds no name: the first attempt removed it.
        ops.unlink = { req, parent, name in
            let s = FuseServer.server(req)
            s.handle(req, .unlink) { fs, ctx in
                try s.retrying(.ENOENT) { try fs.unlink(ctx, parent: parent, name: Convert.name(name)) } alreadyDone: {}
                s.noteSpaceFreed(fs, ctx)
                fuse_reply_err(req, 0)
            }
        }
        ops.rmdir = { req, parent, name in
            let s = FuseServer.server(req)
            s.handle(req, .rmdir) { fs, ctx in
                try s.retrying(.ENOENT) { try fs.rmdir(ctx, parent: parent, name: Convert.name(name)) } alreadyDone: {}
                fuse_reply_err(req, 0)
            }
        }
        ops.symlink = { req, target, parent, name in
            let s = FuseServer.server(req)
            s.handle(req, .symlink) { fs, ctx in
                let name = Convert.name(name)
                s.replyEntry(req, try s.retrying(.EEXIST) {
                    try fs.symlink(ctx, parent: parent, name: name, target: Convert.name(target).bytes)
                } alreadyDone: { try s.madeBefore(fs, ctx, parent: parent, name: name, otherwise: .EEXIST) })
            }
        }
        // A resent rename that finds no source: done before if the target is there.
        ops.rename = { req, parent, name, newParent, newName, flags in
            let s = FuseServer.server(req)
            s.handle(req, .rename) { fs, ctx in
                let newName = Convert.name(newName)
                try s.retrying(.ENOENT) {
                    try fs.rename(ctx, parent: parent, name: Convert.name(name), newParent: newParent,
                                  newName: newName, flags: RenameFlags(rawValue: flags))
                } alreadyDone: { _ = try s.madeBefore(fs, ctx, parent: newParent, name: newName, counted: false, otherwise: .ENOENT) }
                s.noteSpaceFreed(fs, ctx)
                fuse_reply_err(req, 0)
            }
        }
        ops.link = { req, ino, newParent, newName in
            let s = FuseServer.server(req)
            s.handle(req, .link) { fs, ctx in
                let newName = Convert.name(newName)
                s.replyEntry(req, try s.retrying(.EEXIST) { try fs.link(ctx, ino: ino, newParent: newParent, newName: newName) }
                             alreadyDone: { try s.madeBefore(fs, ctx, parent: newParent, name: newName, ino: ino, otherwise: .EEXIST) })
            }
        }
        ops.open = { req, ino, fi in
            let s = FuseServer.server(req)
            s.handle(req, .open) { fs, ctx in
                let open = try fs.open(ctx, ino: ino, flags: s.moduleOpenFlags(fi))
                try? s.dropSetIDIfAsked(fs, ctx, ino: ino)  // the file is open: answer so
                if FuseServer.writes(fi) { s.space?.opened(ino) }
                s.replyOpen(req, fi, open)
                // Attributes cached before space ran low: drop them, so that
                // the first write() asks too.
                if FuseServer.writes(fi), s.space?.isLow == true { s.notifyKernel(ino) }
            }
        }
        ops.read = { req, ino, size, offset, fi in
            FuseServer.server(req).handle(req, .read) { fs, ctx in
                let buffer = ThreadBuffer.get(size)
                let n = try fs.read(ctx, ino: ino, handle: fi?.pointee.fh ?? 0, offset: UInt64(max(offset, 0)),
                                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size]))
                fuse_reply_buf(req, buffer.baseAddress?.assumingMemoryBound(to: CChar.self), n)
            }
        }
        ops.write = { req, ino, data, size, offset, fi in
            let s = FuseServer.server(req)
            s.handle(req, .write) { fs, ctx in
                defer { s.noteWrite(fs, ctx, ino: ino, bytes: size) }
                func write() throws -> Int {
                    try fs.write(ctx, ino: ino, handle: fi?.pointee.fh ?? 0, offset: UInt64(max(offset, 0)),
                                 data: UnsafeRawBufferPointer(start: data, count: size))
                }
                let n: Int
                do { n = try write() } catch let error as Errno where error == .ENOSPC && s.awaitForgetsBehind() {
                    s.runKeptForgets(on: fs)
                    n = try write()
                }
                try? s.dropSetIDIfAsked(fs, ctx, ino: ino)  // the data is written: answer so
                if s.writesPastPageCache(fi) { s.dropCapabilitiesIfAsked(fs, ctx, ino: ino) }
                fuse_reply_write(req, n)
            }
        }
        // No FLUSH: libfuse answers ENOSYS, and the kernel then stops
        // sending it, a round trip saved on every close(2). It carries
        // nothing for a module: the kernel writes the file's cached pages
        // back before it would send it, and reports their errors itself.
        ops.release = { req, ino, fi in
            let s = FuseServer.server(req)
            s.handle(req, .release) { fs, ctx in
                if FuseServer.writes(fi) { s.space?.released(ino) }
                try fs.release(ctx, ino: ino, handle: fi?.pointee.fh ?? 0)
                s.noteSpaceFreed(fs, ctx)
                fuse_reply_err(req, 0)
            }
        }
        ops.fsync = { req, ino, dataOnly, fi in
            FuseServer.server(req).handle(req, .fsync) { fs, ctx in
                try fs.fsync(ctx, ino: ino, handle: fi?.pointee.fh ?? 0, dataOnly: dataOnly != 0)
                fuse_reply_err(req, 0)
            }
        }
        ops.opendir = { req, ino, fi in
            let s = FuseServer.server(req)
            s.handle(req, .opendir) { fs, ctx in
                s.replyOpen(req, fi, OpenReply(handle: try fs.opendir(ctx, ino: ino, flags: fi?.pointee.flags ?? 0)))
            }
        }
        ops.readdir = { req, ino, size, offset, fi in FuseServer.server(req).readdir(req, ino, size, offset, fi, plus: false) }
        ops.readdirplus = { req, ino, size, offset, fi in FuseServer.server(req).readdir(req, ino, size, offset, fi, plus: true) }
        ops.releasedir = { req, ino, fi in
            FuseServer.server(req).handle(req, .releasedir) { fs, ctx in
                try fs.releasedir(ctx, ino: ino, handle: fi?.pointee.fh ?? 0)
                fuse_reply_err(req, 0)
            }
        }
        ops.fsyncdir = { req, ino, dataOnly, fi in
            FuseServer.server(req).handle(req, .fsyncdir) { fs, ctx in
                try fs.fsyncdir(ctx, ino: ino, handle: fi?.pointee.fh ?? 0, dataOnly: dataOnly != 0)
                fuse_reply_err(req, 0)
            }
        }
        // What the kernel holds dirty is written back first, so that df
        // counts it as used.
        ops.statfs = { req, ino in
            let s = FuseServer.server(req)
            s.flushWriters()
            s.awaitForgetsBehind()
            s.handle(req, .statfs) { fs, ctx in
                s.runKeptForgets(on: fs)  // those FORGETs kept (DeferredForgets)
                var v = Convert.statvfs(try fs.statfs(ctx, ino: ino))
                fuse_reply_statfs(req, &v)
            }
        }
        ops.access = { req, ino, mask in
            FuseServer.server(req).handle(req, .access) { fs, ctx in
                try fs.access(ctx, ino: ino, mask: mask)
                fuse_reply_err(req, 0)
            }
        }
        ops.create = { req, parent, name, mode, fi in
            let s = FuseServer.server(req)
            s.handle(req, .create) { fs, ctx in
                let name = Convert.name(name), flags = s.moduleOpenFlags(fi)
                // A resent O_EXCL create that finds the file: the first attempt made it; open that.
                let (entry, open) = try s.retrying(.EEXIST) {
                    try fs.create(ctx, parent: parent, name: name, mode: mode, flags: flags)
                } alreadyDone: {
                    let entry = try s.madeBefore(fs, ctx, parent: parent, name: name, otherwise: .EEXIST)
                    return (entry, try fs.open(ctx, ino: entry.ino, flags: flags & ~(O_CREAT | O_EXCL | O_TRUNC)))
                }
                if FuseServer.writes(fi) { s.space?.opened(entry.ino) }
                var p = Convert.entry(entry, timeout: s.timeout, attributeTimeout: s.attributeTimeout(entry.ino))
                s.fill(fi, open)
                fuse_reply_create(req, &p, fi)
            }
        }
        ops.getxattr = { req, ino, name, size in
            FuseServer.server(req).handle(req, .getxattr) { fs, ctx in
                let value = try fs.getxattr(ctx, ino: ino, name: Convert.name(name))
                if size == 0 { fuse_reply_xattr(req, value.count); return }
                guard value.count <= size else { throw Errno.ERANGE }
                value.withUnsafeBytes { _ = fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), value.count) }
            }
        }
        ops.listxattr = { req, ino, size in
            FuseServer.server(req).handle(req, .listxattr) { fs, ctx in
                let names: [UInt8] = try fs.listxattr(ctx, ino: ino).flatMap { $0.bytes + [0] }
                if size == 0 { fuse_reply_xattr(req, names.count); return }
                guard names.count <= size else { throw Errno.ERANGE }
                names.withUnsafeBytes { _ = fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), names.count) }
            }
        }
        // A resent XATTR_CREATE that finds the attribute: the first attempt
        // set it, if it holds this value.
        ops.setxattr = { req, ino, name, value, size, flags in
            let s = FuseServer.server(req)
            s.handle(req, .setxattr) { fs, ctx in
                let name = Convert.name(name), value = UnsafeRawBufferPointer(start: value, count: size)
                try s.retrying(.EEXIST) {
                    try fs.setxattr(ctx, ino: ino, name: name, value: value, flags: flags)
                } alreadyDone: {
                    guard try fs.getxattr(ctx, ino: ino, name: name).elementsEqual(value) else { throw Errno.EEXIST }
                }
                fuse_reply_err(req, 0)
            }
        }
        // A resent removexattr that finds no attribute: the first attempt removed it.
        ops.removexattr = { req, ino, name in
            let s = FuseServer.server(req)
            s.handle(req, .removexattr) { fs, ctx in
                try s.retrying(.ENODATA) { try fs.removexattr(ctx, ino: ino, name: Convert.name(name)) } alreadyDone: {}
                s.noteSpaceFreed(fs, ctx)
                fuse_reply_err(req, 0)
            }
        }
        ops.fallocate = { req, ino, mode, offset, length, fi in
            let s = FuseServer.server(req)
            s.handle(req, .fallocate) { fs, ctx in
                guard offset >= 0, length > 0 else { throw Errno.EINVAL }
                try fs.fallocate(ctx, ino: ino, handle: fi?.pointee.fh ?? 0, mode: mode,
                                 offset: UInt64(offset), length: UInt64(length))
                s.noteSpaceFreed(fs, ctx)
                fuse_reply_err(req, 0)
            }
        }
        ops.lseek = { req, ino, offset, whence, fi in
            FuseServer.server(req).handle(req, .lseek) { fs, ctx in
                guard offset >= 0 else { throw Errno.ENXIO }
                let found = try fs.seek(ctx, ino: ino, handle: fi?.pointee.fh ?? 0, offset: UInt64(offset), whence: whence)
                guard found <= UInt64(Int64.max) else { throw Errno.EOVERFLOW }
                fuse_reply_lseek(req, off_t(found))
            }
        }
        return ops
    }

    /// readdir and readdirplus: entries packed into one reply buffer.
    func readdir(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ offset: off_t,
                 _ fi: UnsafeMutablePointer<fuse_file_info>?, plus: Bool) {
        handle(req, plus ? .readdirplus : .readdir) { fs, ctx in
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: max(size, 1))
            defer { buffer.deallocate() }
            var used = 0
            try fs.readdir(ctx, ino: ino, handle: fi?.pointee.fh ?? 0, offset: UInt64(max(offset, 0)), plus: plus) { e in
                var name = e.name.bytes
                name.append(0)
                let needed = name.withUnsafeBufferPointer { raw in
                    raw.withMemoryRebound(to: CChar.self) { cname -> Int in
                        if plus {
                            // No entry ("." and ".."): ino 0 tells the kernel not to link it.
                            var p = e.entry.map { Convert.entry($0, timeout: timeout, attributeTimeout: attributeTimeout($0.ino)) }
                                ?? fuse_entry_param()
                            if e.entry == nil { p.attr.st_ino = UInt(e.ino); p.attr.st_mode = e.type }
                            return fuse_add_direntry_plus(req, buffer + used, size - used, cname.baseAddress, &p, off_t(e.nextOffset))
                        }
                        var st = Glibc.stat()
                        st.st_ino = UInt(e.ino)
                        st.st_mode = e.type
                        return fuse_add_direntry(req, buffer + used, size - used, cname.baseAddress, &st, off_t(e.nextOffset))
                    }
                }
                guard needed <= size - used else { return false }
                used += needed
                return true
            }
            fuse_reply_buf(req, buffer, used)
        }
    }
}
