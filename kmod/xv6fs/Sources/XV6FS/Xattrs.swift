import BentoKit
import XV6Layout

/// Extended attributes (version 3, feature `xattr`): one attribute block
/// per inode, large values in blocks of their own (XattrBlock). Every
/// change rewrites the attribute block in one log transaction.
extension Volume {
    /// The inode's attributes, as its attribute block holds them.
    func xattrs(_ inode: Inode) throws -> [XattrEntry] {
        let block = inode.disk.xattrBlock
        guard block != 0 else { return [] }
        guard sb.isDataBlock(block) else { throw Errno.EUCLEAN }
        let entries = try cache.withBlock(UInt64(block)) { XattrBlock.decode($0, owner: inode.ino) }
        guard let entries, entries.allSatisfy({ $0.blocks.allSatisfy(sb.isDataBlock) }) else { throw Errno.EUCLEAN }
        return entries
    }

    func value(of entry: XattrEntry) throws -> [UInt8] {
        guard !entry.blocks.isEmpty else { return entry.inline }
        var value: [UInt8] = []
        value.reserveCapacity(entry.length)
        for block in entry.blocks {
            let count = min(Layout.blockSize, entry.length - value.count)
            try cache.withBlock(UInt64(block)) { value.append(contentsOf: $0[0..<count]) }
        }
        return value
    }

    /// An entry for `value`: inline if small, else in new blocks.
    func makeEntry(name: [UInt8], value: UnsafeRawBufferPointer) throws -> XattrEntry {
        guard value.count > XattrBlock.inlineMax else {
            return XattrEntry(name: name, length: value.count, inline: Array(value))
        }
        var blocks: [UInt32] = []
        do {
            for start in stride(from: 0, to: value.count, by: Layout.blockSize) {
                let block = try self.blocks.allocate()
                blocks.append(block)
                let part = UnsafeRawBufferPointer(rebasing: value[start..<min(start + Layout.blockSize, value.count)])
                try cache.withMutableBlock(UInt64(block), fill: .zero) { $0.copyMemory(from: part) }
                log.record(UInt64(block))
            }
        } catch {
            for block in blocks { try? self.blocks.free(block) }
            throw error
        }
        return XattrEntry(name: name, length: value.count, blocks: blocks)
    }

    /// Writes `entries` as the inode's attribute block: allocated for the
    /// first attribute, freed with the last. The caller updates the inode.
    func storeXattrs(_ inode: Inode, _ entries: [XattrEntry]) throws {
        if entries.isEmpty {
            if inode.disk.xattrBlock != 0 { try blocks.free(inode.disk.xattrBlock) }
            inode.disk.xattrBlock = 0
            return
        }
        if inode.disk.xattrBlock == 0 { inode.disk.xattrBlock = try blocks.allocate() }
        let block = UInt64(inode.disk.xattrBlock)
        try cache.withMutableBlock(block, fill: .zero) { XattrBlock.encode(entries, owner: inode.ino, into: $0) }
        log.record(block)
    }

    /// Frees every attribute block of an inode being freed.
    func freeXattrs(_ inode: Inode) throws {
        guard inode.disk.xattrBlock != 0 else { return }
        for entry in try xattrs(inode) { for block in entry.blocks { try blocks.free(block) } }
        try storeXattrs(inode, [])
    }
}

/// The FileSystem calls. Versions 1 and 2 keep none: they answer as they
/// always have.
extension Xv6FileSystem {
    static let xattrCreate: Int32 = 1
    static let xattrReplace: Int32 = 2
    static let namespaces: [[UInt8]] = ["user.", "trusted.", "security."].map { Array($0.utf8) }
    static let aclNames: [[UInt8]] = ["system.posix_acl_access", "system.posix_acl_default"].map { Array($0.utf8) }

    private func xattrInode(_ ino: InodeNumber) throws -> Inode {
        guard ino <= InodeNumber(UInt32.max) else { throw Errno.ENOENT }
        return try volume.inodes.get(UInt32(ino))
    }

    /// Checks a name as Linux does: ERANGE when too long, EOPNOTSUPP
    /// outside the namespaces kept, EPERM where the namespace forbids it.
    private func checkXattrName(_ ctx: RequestContext, _ name: [UInt8], _ inode: Inode, writing: Bool) throws {
        guard name.count <= XattrBlock.maxNameLength else { throw Errno.ERANGE }
        guard !name.isEmpty, !name.contains(0) else { throw Errno.EINVAL }
        if Self.aclNames.contains(name) {
            // Only a directory has a default ACL.
            if name == Self.aclNames[1] && !inode.isDirectory { throw writing ? Errno.EACCES : Errno.ENODATA }
            return
        }
        guard let prefix = Self.namespaces.first(where: { name.starts(with: $0) }) else { throw Errno.EOPNOTSUPP }
        guard name.count > prefix.count else { throw Errno.EINVAL }
        if prefix == Self.namespaces[1] && ctx.uid != 0 { throw Errno.EPERM }  // trusted: CAP_SYS_ADMIN
        // user.: regular files and directories only (sticky directories aside, as Linux).
        if prefix == Self.namespaces[0] && !inode.disk.isRegular && !inode.isDirectory {
            throw writing ? Errno.EPERM : Errno.ENODATA
        }
    }

    public func getxattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName) throws -> [UInt8] {
        // ENOSYS (rather than ENODATA) tells the kernel once that there are
        // none: it stops asking, where it would otherwise ask for
        // security.capability before every write.
        guard storesXattrs else { throw Errno.ENOSYS }
        return try lock.withLock {
            let node = try xattrInode(ino)
            try checkXattrName(ctx, name.bytes, node, writing: false)
            guard let entry = try volume.xattrs(node).first(where: { $0.name == name.bytes }) else { throw Errno.ENODATA }
            return try volume.value(of: entry)
        }
    }

    public func listxattr(_ ctx: RequestContext, ino: InodeNumber) throws -> [FileName] {
        guard storesXattrs else { throw Errno.ENOSYS }
        return try lock.withLock {
            let node = try xattrInode(ino)
            // trusted.* names only for the administrator, as Linux lists them.
            return try volume.xattrs(node).filter { ctx.uid == 0 || !$0.name.starts(with: Self.namespaces[1]) }
                .map { FileName($0.name) }
        }
    }

    public func setxattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName, value: UnsafeRawBufferPointer,
                         flags: Int32) throws {
        guard storesXattrs else { throw Errno.EOPNOTSUPP }
        guard flags & ~(Self.xattrCreate | Self.xattrReplace) == 0 else { throw Errno.EINVAL }
        guard value.count <= XattrBlock.maxValueLength else { throw Errno.E2BIG }
        try lock.withLock {
            let node = try xattrInode(ino)
            try checkXattrName(ctx, name.bytes, node, writing: true)
            // The kernel enforces an access ACL through the mode's bits, which
            // the file system keeps in step (as posix_acl_update_mode does).
            let aclMode = name.bytes == Self.aclNames[0] ? try Self.modeOfAccessACL(value) : nil
            let firstUse = try transaction { () throws -> Bool in
                var entries = try volume.xattrs(node)
                let index = entries.firstIndex { $0.name == name.bytes }
                if index != nil && flags & Self.xattrCreate != 0 { throw Errno.EEXIST }
                if index == nil && flags & Self.xattrReplace != 0 { throw Errno.ENODATA }
                if let aclMode {
                    node.disk.mode = (node.disk.mode & ~0o777) | aclMode.mode
                    // An ACL that says no more than the mode is not kept.
                    if aclMode.equivalent {
                        if let index {
                            let old = entries.remove(at: index)
                            try volume.storeXattrs(node, entries)
                            for block in old.blocks { try volume.blocks.free(block) }
                        }
                        node.disk.ctime = currentTime()
                        try volume.inodes.update(node)
                        return false
                    }
                }
                let old = index.map { entries[$0] }
                var candidate = entries
                let placeholder = XattrEntry(name: name.bytes, length: value.count,
                                             inline: value.count > XattrBlock.inlineMax ? [] : Array(value),
                                             blocks: Array(repeating: 0, count: value.count > XattrBlock.inlineMax
                                                           ? XattrBlock.blockCount(value.count) : 0))
                if let index { candidate[index] = placeholder } else { candidate.append(placeholder) }
                // No room left in the attribute block: ENOSPC, as ext4 answers.
                guard XattrBlock.fits(candidate) else { throw Errno.ENOSPC }
                let firstUse = try volume.useFeature(.xattr)
                let entry = try volume.makeEntry(name: name.bytes, value: value)
                if let index { entries[index] = entry } else { entries.append(entry) }
                do {
                    try volume.storeXattrs(node, entries)
                } catch {
                    for block in entry.blocks { try? volume.blocks.free(block) }
                    throw error
                }
                for block in old?.blocks ?? [] { try volume.blocks.free(block) }
                node.disk.ctime = currentTime()
                try volume.inodes.update(node)
                return firstUse
            }
            // Durable at once: versions that do not know the feature read
            // the superblock from the disk, not from this cache.
            if firstUse { try commitNow() }
            observer?(ctx, .setattr(ino: node.ino))
        }
    }

    public func removexattr(_ ctx: RequestContext, ino: InodeNumber, name: FileName) throws {
        guard storesXattrs else { throw Errno.EOPNOTSUPP }
        try lock.withLock {
            let node = try xattrInode(ino)
            try checkXattrName(ctx, name.bytes, node, writing: true)
            try transaction {
                var entries = try volume.xattrs(node)
                guard let index = entries.firstIndex(where: { $0.name == name.bytes }) else { throw Errno.ENODATA }
                let old = entries.remove(at: index)
                try volume.storeXattrs(node, entries)
                for block in old.blocks { try volume.blocks.free(block) }
                node.disk.ctime = currentTime()
                try volume.inodes.update(node)
            }
            observer?(ctx, .setattr(ino: node.ino))
        }
    }

    /// The permission bits an access ACL stands for (owner, mask or
    /// group, other), and whether it says no more than they do. The value
    /// is the kernel's encoding: version 2, then entries of tag u16, perm
    /// u16, id u32.
    static func modeOfAccessACL(_ value: UnsafeRawBufferPointer) throws -> (mode: UInt32, equivalent: Bool) {
        guard value.count >= 4, (value.count - 4) % 8 == 0, value.u32(0) == 2 else { throw Errno.EINVAL }
        var owner: UInt32?, group: UInt32?, mask: UInt32?, other: UInt32?
        var named = false
        for i in 0..<(value.count - 4) / 8 {
            let perm = UInt32(value.u16(6 + 8 * i) & 7)
            switch value.u16(4 + 8 * i) {
            case 0x01: owner = perm
            case 0x04: group = perm
            case 0x10: mask = perm
            case 0x20: other = perm
            case 0x02, 0x08: named = true
            default: throw Errno.EINVAL
            }
        }
        guard let owner, let group, let other else { throw Errno.EINVAL }
        return (owner << 6 | (mask ?? group) << 3 | other, !named && mask == nil)
    }

    /// After a chmod: the access ACL's owner, mask (or group) and other
    /// entries take the new permission bits, as posix_acl_chmod does.
    /// Called in the chmod's transaction.
    func chmodAccessACL(_ node: Inode) throws {
        guard storesXattrs, node.disk.xattrBlock != 0 else { return }
        var entries = try volume.xattrs(node)
        guard let index = entries.firstIndex(where: { $0.name == Self.aclNames[0] }) else { return }
        var value = try volume.value(of: entries[index])
        guard value.count >= 4, (value.count - 4) % 8 == 0 else { throw Errno.EUCLEAN }
        let mode = node.disk.mode
        let hasMask = stride(from: 4, to: value.count, by: 8).contains { value[$0] == 0x10 }
        for at in stride(from: 4, to: value.count, by: 8) {
            let bits: UInt32?
            switch value[at] {
            case 0x01: bits = mode >> 6
            case 0x10: bits = mode >> 3
            case 0x04: bits = hasMask ? nil : mode >> 3
            case 0x20: bits = mode
            default: bits = nil
            }
            if let bits { value[at + 2] = UInt8(bits & 7); value[at + 3] = 0 }
        }
        if entries[index].blocks.isEmpty {
            entries[index].inline = value
            try volume.storeXattrs(node, entries)
        } else {
            for (i, block) in entries[index].blocks.enumerated() {
                let part = value[(i * Layout.blockSize)..<min((i + 1) * Layout.blockSize, value.count)]
                try volume.cache.withMutableBlock(UInt64(block)) { page in
                    part.withUnsafeBytes { page.copyMemory(from: $0) }
                }
                volume.log.record(UInt64(block))
            }
        }
    }

    /// A new inode in a directory with a default ACL: its access ACL is
    /// that one, masked by the mode asked for (and the mode by it), and a
    /// new directory inherits the default ACL too (posix_acl_create).
    /// Called in the transaction that makes the inode.
    func inheritDefaultACL(from dir: Inode, to node: Inode) throws {
        guard storesXattrs, dir.disk.xattrBlock != 0,
              let inherited = try volume.xattrs(dir).first(where: { $0.name == Self.aclNames[1] }) else { return }
        let defaultACL = try volume.value(of: inherited)
        var access = defaultACL
        var mode = node.disk.mode & 0o777
        let equivalent = try Self.mask(&access, mode: &mode)
        node.disk.mode = (node.disk.mode & ~0o777) | mode
        var entries: [XattrEntry] = []
        do {
            if !equivalent {
                entries.append(try access.withUnsafeBytes { try volume.makeEntry(name: Self.aclNames[0], value: $0) })
            }
            if node.isDirectory {
                entries.append(try defaultACL.withUnsafeBytes { try volume.makeEntry(name: Self.aclNames[1], value: $0) })
            }
            if !entries.isEmpty { try volume.storeXattrs(node, entries) }
        } catch {
            for block in entries.flatMap(\.blocks) { try? volume.blocks.free(block) }
            throw error
        }
    }

    /// posix_acl_create_masq: the owner, other and mask (or group) entries
    /// keep only what `mode` grants, and `mode` only what they grant.
    /// Returns whether the ACL says no more than the mode.
    static func mask(_ acl: inout [UInt8], mode: inout UInt32) throws -> Bool {
        guard acl.count >= 4, (acl.count - 4) % 8 == 0 else { throw Errno.EUCLEAN }
        var groupAt: Int?, maskAt: Int?
        var equivalent = true
        for at in stride(from: 4, to: acl.count, by: 8) {
            let perm = UInt32(acl[at + 2] & 7)
            switch acl[at] {
            case 0x01:
                let granted = perm & (mode >> 6)
                acl[at + 2] = UInt8(granted); mode &= (granted << 6) | ~0o700
            case 0x20:
                let granted = perm & mode
                acl[at + 2] = UInt8(granted); mode &= granted | ~0o007
            case 0x04: groupAt = at
            case 0x10: maskAt = at; equivalent = false
            case 0x02, 0x08: equivalent = false
            default: throw Errno.EUCLEAN
            }
        }
        guard let at = maskAt ?? groupAt else { throw Errno.EUCLEAN }
        let granted = UInt32(acl[at + 2] & 7) & (mode >> 3)
        acl[at + 2] = UInt8(granted); mode &= (granted << 3) | ~0o070
        return equivalent
    }

    private func commitNow() throws {
        do { try volume.log.commit() } catch { failed = true; throw Errno.EIO }
    }
}
