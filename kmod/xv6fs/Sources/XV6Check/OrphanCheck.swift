import BentoKit
import XV6Layout

/// Allocated inodes the root does not reach. Those no directory names are
/// orphans: with nlink 0 an unlinked file still open when its instance
/// ended (a crash, or an unmount while a resumed session's kernel still held
/// it), legal and reclaimed by the next fresh mount (info); otherwise an
/// error. The rest hang below an
/// orphaned directory or in a directory cycle.
extension CheckRun {
    func checkOrphans() {
        // Without a root everything is unreachable: the root error says it all.
        guard rootIsDirectory else { return }
        var below = 0
        var resolved = Set<UInt32>()
        for ino in (Layout.rootInode + 1)..<max(sb.inodeCount, Layout.rootInode + 1) {
            let mode = modes[Int(ino)]
            guard mode != 0, !reached.contains(UInt64(ino)) else { continue }
            if names[Int(ino)] == 0 {
                reportOrphan(ino, mode)
            } else if mode & FileMode.typeMask == FileMode.directory {
                if !resolved.contains(ino) { below += findCycle(from: ino, resolved: &resolved) }
            } else {
                below += 1
            }
        }
        if below > 0 {
            info(.orphan, "\(below) more inode(s) are named only from orphaned directories or directory cycles")
        }
    }

    private func reportOrphan(_ ino: UInt32, _ mode: UInt32) {
        let nlink = nlinks[Int(ino)]
        if nlink == 0 {
            // Legal: the next fresh mount reclaims it.
            info(.orphan, "inode \(ino) (\(typeName(mode))) has no links and no directory entry: an unlinked "
                 + "file still open when the file system stopped, which the next fresh mount reclaims", inode: ino)
        } else {
            error(.orphan, "inode \(ino) (\(typeName(mode)), nlink \(nlink)) is not named by any directory", inode: ino)
        }
    }

    /// Follows the first-parent chain up from an unreachable directory: it
    /// ends at an orphaned directory (reported already) or runs in a cycle.
    /// Returns how many directories on the chain are not in a cycle.
    private func findCycle(from start: UInt32, resolved: inout Set<UInt32>) -> Int {
        var path: [UInt32] = []
        var position: [UInt32: Int] = [:]
        var current = start
        // A chain visits each directory at most once before it repeats.
        while path.count <= shapes.count, !resolved.contains(current), names[Int(current)] > 0 {
            if let first = position[current] {
                let cycle = Array(path[first...])
                let list = cycle.map(String.init).joined(separator: " -> ")
                error(.directoryCycle, "directories \(list) -> \(current) form a cycle not reachable from the root",
                      inode: current)
                resolved.formUnion(path)
                return path.count - cycle.count
            }
            guard let parent = parents[current] else { break }
            position[current] = path.count
            path.append(current)
            current = parent
        }
        resolved.formUnion(path)
        return path.count
    }
}
