import BentoKit
import Testing

/// The map behind the buffer cache and the inode caches, against Swift's
/// Dictionary as the model.
@Suite struct IntegerMapTests {
    /// Random inserts, overwrites and removals over a small key range, so
    /// that runs of colliding keys form and break up: after every step the
    /// map holds exactly what the model holds.
    @Test func agreesWithADictionaryThroughInsertsAndRemovals() {
        var generator = SystemRandomNumberGenerator()
        for keyRange in [UInt64(64), 4096, 1 << 40] {
            var map = IntegerMap<Int>()
            var model: [UInt64: Int] = [:]
            for step in 0..<20_000 {
                let key = UInt64.random(in: 0..<keyRange, using: &generator)
                if Int.random(in: 0..<3, using: &generator) == 0 {
                    #expect(map.removeValue(forKey: key) == model.removeValue(forKey: key))
                } else {
                    map[key] = step
                    model[key] = step
                }
                #expect(map.count == model.count)
                // Every key the model holds is found, and a few it does not hold are not.
                if step % 500 == 0 {
                    for (k, v) in model { #expect(map[k] == v) }
                    for k in 0..<64 as Range<UInt64> where model[k + keyRange] == nil { #expect(map[k + keyRange] == nil) }
                }
            }
            #expect(Dictionary(uniqueKeysWithValues: map.map { ($0.key, $0.value) }) == model)
        }
    }

    /// Sequential numbers (blocks of one file, inodes of one directory)
    /// through growth, then removed from the middle out.
    @Test func sequentialKeysSurviveGrowthAndRemoval() {
        var map = IntegerMap<UInt64>()
        for key in 0..<100_000 as Range<UInt64> { map[key] = key * 3 }
        #expect(map.count == 100_000)
        for key in stride(from: 0, to: 100_000 as UInt64, by: 2) { map[key] = nil }
        #expect(map.count == 50_000)
        for key in 0..<100_000 as Range<UInt64> { #expect(map[key] == (key % 2 == 1 ? key * 3 : nil)) }
        #expect(Set(map.keys) == Set(stride(from: 1, to: 100_000 as UInt64, by: 2)))
        map.removeAll()
        #expect(map.isEmpty && map[1] == nil)
    }

    @Test func reservedCapacityHoldsKeysAndDefaultsCount() {
        var map = IntegerMap<Int>(minimumCapacity: 1000)
        map[UInt64.max] = 1
        map[0, default: 0] += 5
        map[0, default: 0] += 5
        #expect(map[UInt64.max] == 1 && map[0] == 10 && map.count == 2)
        #expect(map.values.sorted() == [1, 10])
        map.removeAll(keepingCapacity: true)
        #expect(map.isEmpty && map[0] == nil && map[UInt64.max] == nil && Array(map).isEmpty)
        map[7] = 7
        #expect(map[7] == 7 && map.count == 1)
    }
}
