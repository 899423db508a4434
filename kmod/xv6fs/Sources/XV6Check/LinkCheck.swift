import BentoKit
import XV6Layout

/// Link counts: a directory's nlink is 2 plus its subdirectories, anything
/// else's the number of entries naming it. Orphans are left to their own
/// finding. When some directory could not be read in full, entries may be
/// missing from the count, so nlink is then only ever raised.
extension CheckRun {
    func checkLinkCounts() {
        let mayLower = !treeDamaged && corrupt.population == 0
        for ino in Layout.rootInode..<max(sb.inodeCount, Layout.rootInode) {
            let mode = modes[Int(ino)]
            let count = names[Int(ino)]
            guard mode != 0, count > 0 || ino == Layout.rootInode else { continue }
            let expected: UInt32
            if mode & FileMode.typeMask == FileMode.directory {
                let subdirectories = contents[ino]?.subdirectories ?? 0
                expected = subdirectories > UInt32.max - 2 ? UInt32.max : subdirectories + 2
            } else {
                expected = count
            }
            let stored = nlinks[Int(ino)]
            guard stored != expected else { continue }
            let repaired = (mayLower || expected > stored) && repairInode(ino) { $0.nlink = expected }
            if repaired { nlinks[Int(ino)] = expected }
            error(.linkCount, "inode \(ino) (\(typeName(mode))): link count is \(stored), should be \(expected)",
                  repaired: repaired, inode: ino)
        }
    }
}
