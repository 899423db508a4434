/// An operation journal: what makes an answered operation survive the death
/// of the host process, at memory speed.
///
/// A module that keeps a transaction open across operations (group commit)
/// has answered operations that exist only in the buffer cache. The host
/// lends it a journal that outlives the process (shared memory the service
/// manager keeps): at the end of every operation the module names the
/// blocks that operation changed, and the journal keeps a copy of each, so
/// that a restarted instance can put back what the dead one had answered.
/// It covers the death of the process, not of the machine: after a power
/// loss the last durable commit is what counts, as without a journal.
///
/// Calls come from one module instance at a time, under its own lock.
public protocol OperationJournal: AnyObject {
    /// The most distinct blocks it holds between two resets.
    var capacity: Int { get }

    /// Copies the current contents of `blocks` (home block numbers, as the
    /// buffer cache holds them now) into the journal, all or none of them:
    /// a crash at any point leaves the journal at the end of this operation
    /// or of the previous one. Call it at the end of an operation, before
    /// it is answered. Throws, changing nothing, when the blocks do not fit
    /// (the module then makes the operation durable the slow way: a commit).
    func record(_ blocks: [UInt64]) throws

    /// Empties the journal: everything it held is durable now. `checkpoint`
    /// names the durable state the journal builds on from now on (the
    /// module's choice: its log's commit number and volume identity, say);
    /// recovery applies the journal only to that state.
    func reset(checkpoint: UInt64)

    /// The checkpoint given to the last reset (0 for a new journal).
    var checkpoint: UInt64 { get }

    /// Operations recorded since the last reset.
    var pendingOperations: UInt64 { get }

    /// Calls `body` with every block recorded since the last reset and its
    /// latest contents, as of the last complete operation, in no particular
    /// order. The buffer is valid during the call only.
    func forEachPending(_ body: (_ block: UInt64, _ contents: UnsafeRawBufferPointer) throws -> Void) rethrows
}
