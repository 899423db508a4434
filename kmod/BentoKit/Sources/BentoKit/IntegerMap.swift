/// A map from block or inode numbers to values, for the lookups a file
/// system makes on every operation (buffer cache, inode cache, kernel
/// references). Swift's `Dictionary` hashes every key with SipHash, which
/// costs more than the rest of such a lookup; numbers need no protection
/// from chosen collisions, so this map hashes by one multiplication
/// (Fibonacci hashing) and probes linearly.
///
/// Order of iteration is unspecified, as a dictionary's.
@frozen
public struct IntegerMap<Value> {
    /// A key and its value side by side: a probe touches one cache line,
    /// where two arrays would make it touch two.
    @frozen @usableFromInline struct Slot {
        /// Valid where `value` is not nil.
        @usableFromInline var key: UInt64
        /// nil: the slot is empty.
        @usableFromInline var value: Value?
        @inlinable init(key: UInt64, value: Value?) { self.key = key; self.value = value }
    }
    @usableFromInline var slots: [Slot]
    /// 64 minus log2 of the slot count: the hash's top bits index a slot.
    @usableFromInline var shift: UInt64
    @usableFromInline var storedCount: Int
    @inlinable public var count: Int { storedCount }

    @inlinable public init() {
        slots = Array(repeating: Slot(key: 0, value: nil), count: 8)
        shift = 61
        storedCount = 0
    }

    @inlinable public init(minimumCapacity: Int) {
        self.init()
        reserveCapacity(minimumCapacity)
    }

    @inlinable public var isEmpty: Bool { count == 0 }

    /// Makes room for `capacity` keys without growing again.
    @inlinable public mutating func reserveCapacity(_ capacity: Int) {
        var count = slots.count
        while capacity * 2 > count { count *= 2 }
        if count > slots.count { rehash(slots: count) }
    }

    @inlinable @inline(__always)
    func home(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// The slot holding `key`, or the empty slot where it would go.
    @inlinable @inline(__always)
    func find(_ key: UInt64) -> (slot: Int, found: Bool) {
        let mask = slots.count - 1
        var slot = home(key)
        while slots[slot].value != nil {
            if slots[slot].key == key { return (slot, true) }
            slot = (slot + 1) & mask
        }
        return (slot, false)
    }

    @inlinable public subscript(key: UInt64) -> Value? {
        get {
            let (slot, found) = find(key)
            return found ? slots[slot].value : nil
        }
        set {
            if let newValue { insert(newValue, forKey: key) } else { removeValue(forKey: key) }
        }
    }

    @inlinable public subscript(key: UInt64, default value: @autoclosure () -> Value) -> Value {
        get { self[key] ?? value() }
        set { insert(newValue, forKey: key) }
    }

    @inlinable mutating func insert(_ value: Value, forKey key: UInt64) {
        let (at, found) = find(key)
        var slot = at
        if !found {
            if (count + 1) * 2 > slots.count {
                rehash(slots: slots.count * 2)
                slot = find(key).slot
            }
            slots[slot].key = key
            storedCount += 1
        }
        slots[slot].value = value
    }

    /// Removes `key`; returns what it mapped to. The keys after it in its
    /// run move back, so that no lookup stops short at the hole.
    @inlinable @discardableResult
    public mutating func removeValue(forKey key: UInt64) -> Value? {
        let (slot, found) = find(key)
        guard found else { return nil }
        let removed = slots[slot].value
        let mask = slots.count - 1
        var hole = slot
        var next = (hole + 1) & mask
        while slots[next].value != nil {
            // A key may fill the hole if its home is not in (hole, next].
            let home = home(slots[next].key)
            if (next &- home) & mask >= (next &- hole) & mask {
                slots[hole] = slots[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole].value = nil
        storedCount -= 1
        return removed
    }

    @inlinable public mutating func removeAll(keepingCapacity: Bool = false) {
        guard keepingCapacity else { self = IntegerMap(); return }
        for slot in slots.indices { slots[slot].value = nil }
        storedCount = 0
    }

    @inlinable mutating func rehash(slots count: Int) {
        let old = slots
        slots = Array(repeating: Slot(key: 0, value: nil), count: count)
        shift = UInt64(64 - count.trailingZeroBitCount)
        for entry in old where entry.value != nil {
            slots[find(entry.key).slot] = entry
        }
    }
}

extension IntegerMap: Sequence {
    public typealias Element = (key: UInt64, value: Value)

    @frozen public struct Iterator: IteratorProtocol {
        @usableFromInline let map: IntegerMap
        @usableFromInline var slot = 0
        @inlinable init(_ map: IntegerMap) { self.map = map }

        @inlinable public mutating func next() -> Element? {
            while slot < map.slots.count {
                defer { slot += 1 }
                if let value = map.slots[slot].value { return (map.slots[slot].key, value) }
            }
            return nil
        }
    }

    @inlinable public func makeIterator() -> Iterator { Iterator(self) }

    @inlinable public var keys: [UInt64] { map(\.key) }
    @inlinable public var values: [Value] { map(\.value) }
}

extension IntegerMap: @unchecked Sendable where Value: Sendable {}
