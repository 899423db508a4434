/// Tells a stuck request loop from a busy or an idle one, for the watchdog:
/// stuck is requests inside the file system and none answered for longer
/// than `limit` seconds. An idle loop (nothing inside) is never stuck, nor
/// one that answers anything at all.
public struct StallDetector: Sendable {
    public let limit: Double
    private var lastAnswered: UInt64 = 0
    /// Since when nothing has been answered while requests were inside.
    private var since: Double?

    public init(limit: Double) { self.limit = limit }

    /// Looks at the loop once more: `answered` is its running count of
    /// answered requests, `inside` how many are in the file system now.
    public mutating func isStuck(answered: UInt64, inside: Int, now: Double) -> Bool {
        if inside == 0 || answered != lastAnswered || since == nil {
            lastAnswered = answered
            since = inside == 0 ? nil : now
            return false
        }
        return now - since! > limit
    }
}
