import Glibc

/// What a module changed on its own, outside the request that asked for
/// it, so that the kernel drops what it cached of it.
///
/// The kernel caches names (also the absence of a name) and attributes for
/// a long time: nothing but the module changes the file system, and the
/// kernel learns of every change a request makes from its reply. A change
/// the module makes by itself (xv6fs 2.x appends a provenance record to
/// /.provenance for other files' operations) reaches the kernel only if the
/// module reports it here. The host sends the notifications from a thread
/// of its own, soon after, never inside the request: the kernel may hold
/// the locks of the request's directory until it is answered.
public final class KernelCache: @unchecked Sendable {
    /// One thing the kernel must look up again.
    @frozen public enum Change: Hashable, Sendable {
        /// A name in a directory appeared, went, or names another inode.
        case entry(parent: InodeNumber, name: [UInt8])
        /// An inode's attributes or data changed.
        case inode(InodeNumber)
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Pending changes, each once however often it was reported.
    private var pending: Set<Change> = []

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// `name` in `parent` appeared, disappeared, or now names another inode.
    public func entryChanged(parent: InodeNumber, name: FileName) {
        report(.entry(parent: parent, name: name.bytes))
    }

    /// The attributes or the data of `ino` changed.
    public func inodeChanged(_ ino: InodeNumber) {
        report(.inode(ino))
    }

    private func report(_ change: Change) {
        pthread_mutex_lock(mutex)
        let inserted = pending.insert(change).inserted
        pthread_mutex_unlock(mutex)
        if inserted { pthread_cond_signal(condition) }
    }

    /// The host's side: waits until a change is pending, then takes all.
    @_spi(Host)
    public func waitForChanges() -> Set<Change> {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while pending.isEmpty { pthread_cond_wait(condition, mutex) }
        defer { pending.removeAll(keepingCapacity: true) }
        return pending
    }
}
