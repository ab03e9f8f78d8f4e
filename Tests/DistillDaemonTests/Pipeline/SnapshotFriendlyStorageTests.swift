import DistillCore
import Foundation
import Testing

@testable import DistillDaemon

/// The sharded and chunked collections behind the label join and the duplicate filter behave exactly like the
/// `Dictionary`, `Set` and `Array` they replace, snapshots included: a copy taken mid-stream keeps its contents while
/// the original changes (what a checkpoint relies on).
@Suite("Snapshot-friendly storage")
struct SnapshotFriendlyStorageTests {
    @Test("IDShards and IDSet equal a Dictionary and a Set over 30,000 random operations, snapshots included")
    func shardsEqualDictionary() {
        var rng = SplitMix(seed: 3)
        var shards = IDShards<Int>(expectedCount: 3_000)
        var reference: [String: Int] = [:]
        var set = IDSet(expectedCount: 3_000)
        var referenceSet = Set<String>()
        var snapshots: [(IDShards<Int>, [String: Int], IDSet, Set<String>)] = []
        for step in 0..<30_000 {
            // Ids from a small space (so updates and removals hit), some non-ASCII and long.
            let n = Int(rng.next() % 3_000)
            let id = n % 97 == 0 ? "réq-\(n)-\(String(repeating: "x", count: n % 40))" : "id-\(n)"
            switch rng.next() % 4 {
            case 0, 1:
                shards[id] = step
                reference[id] = step
                let inserted = set.insert(id)
                #expect(inserted == referenceSet.insert(id).inserted)
            case 2:
                let removed = shards.removeValue(forKey: id)
                #expect(removed == reference.removeValue(forKey: id))
                set.remove(id)
                referenceSet.remove(id)
            default:
                shards[id] = nil
                reference[id] = nil
            }
            #expect(shards[id] == reference[id] && set.contains(id) == referenceSet.contains(id))
            if step % 5_000 == 0 { snapshots.append((shards, reference, set, referenceSet)) }
        }
        #expect(shards.count == reference.count && shards.dictionary == reference)
        #expect(shards.sortedIDs == reference.keys.sorted())
        #expect(set.count == referenceSet.count && referenceSet.allSatisfy(set.contains))
        for (copy, expected, copySet, expectedSet) in snapshots {
            #expect(copy.dictionary == expected && copy.count == expected.count)
            #expect(copySet.count == expectedSet.count && expectedSet.allSatisfy(copySet.contains))
        }
        #expect(IDShards(reference, expectedCount: 10).dictionary == reference)
    }

    @Test("Full at the label join's and the duplicate filter's capacities, shards fill 1,024 buckets over half")
    func shardsSizedForTheirCount() {
        // 64 shards of 50,000 waiting samples were 781 entries each on average, over 1,024 × 3/4: most of them had
        // 2,048 buckets.
        var samples = IDShards<Int>(expectedCount: 50_000)
        for i in 0..<50_000 { samples["req-\(i)"] = i }
        #expect(samples.shardCount == 84)
        #expect(samples.bucketCount == samples.shardCount * 1_024, "every shard within 1,024 buckets")
        #expect(Double(samples.count) / Double(samples.bucketCount) > 0.55)
        var ids = IDSet(expectedCount: 200_000)
        for i in 0..<200_000 { ids.insert("s\(i * 7)") }
        #expect(ids.bucketCount == ids.shardCount * 1_024)
        #expect(Double(ids.count) / Double(ids.bucketCount) > 0.55)
        // A damaged checkpoint's capacity cannot make it allocate without bound.
        #expect(IDShards<Int>(expectedCount: .max).shardCount == 65_536)
        #expect(IDShards<Int>(expectedCount: -5).shardCount == 1)
        // 64 shards, as before, at the same count: most shards doubled.
        var old = IDShards<Int>(expectedCount: 64 * 600)
        for i in 0..<50_000 { old["req-\(i)"] = i }
        #expect(old.shardCount == 64 && old.bucketCount > 64 * 1_536)
        #expect(samples.bucketCount * 5 < old.bucketCount * 4, "\(samples.bucketCount) against \(old.bucketCount)")
        var oldIDs = IDSet(expectedCount: 64 * 600)
        for i in 0..<200_000 { oldIDs.insert("s\(i * 7)") }
        #expect(ids.bucketCount * 4 < oldIDs.bucketCount * 3, "\(ids.bucketCount) against \(oldIDs.bucketCount)")
        print("figure: buckets for 50,000 waiting samples \(samples.bucketCount) (64 shards: \(old.bucketCount)), "
              + "for 200,000 recent ids \(ids.bucketCount) (64 shards: \(oldIDs.bucketCount))")
    }

    @Test("ChunkedArray equals an Array under appends, element changes and prefix drops, snapshots included")
    func chunkedEqualsArray() throws {
        var rng = SplitMix(seed: 5)
        var chunked = ChunkedArray<Int>()
        var reference: [Int] = []
        var snapshots: [(ChunkedArray<Int>, [Int])] = []
        for step in 0..<40_000 {
            switch rng.next() % 10 {
            case 0:
                // Drops of every size: inside the first chunk, across chunks, everything.
                let n = reference.isEmpty ? 0 : Int(rng.next() % UInt64(min(reference.count, 9_000) + 1))
                chunked.removeFirst(n)
                reference.removeFirst(n)
            case 1 where !reference.isEmpty:
                let i = Int(rng.next() % UInt64(reference.count))
                chunked[i] = -step
                reference[i] = -step
            default:
                chunked.append(step)
                reference.append(step)
            }
            #expect(chunked.count == reference.count)
            if !reference.isEmpty {
                let i = Int(rng.next() % UInt64(reference.count))
                #expect(chunked[i] == reference[i])
            }
            if step % 4_000 == 0 { snapshots.append((chunked, reference)) }
        }
        #expect(Array(chunked) == reference)
        // Encoded element by element, it is the array's bytes (binary and JSON), so a checkpoint decodes it as one.
        #expect(try StateBinaryEncoder().encode(chunked) == StateBinaryEncoder().encode(reference))
        #expect(try JSONEncoder().encode(chunked) == JSONEncoder().encode(reference))
        chunked.removeFirst(chunked.count)
        #expect(chunked.isEmpty && Array(chunked).isEmpty)
        #expect(try StateBinaryEncoder().encode(chunked) == StateBinaryEncoder().encode([Int]()))
        chunked.append(7)
        #expect(Array(chunked) == [7])
        for (copy, expected) in snapshots {
            #expect(Array(copy) == expected)
            #expect(try StateBinaryEncoder().encode(copy) == StateBinaryEncoder().encode(expected))
        }
        #expect(Array(ChunkedArray(reference)) == reference)
    }

    @Test("RecentIDs: the duplicate filter forgets exactly the oldest ids beyond its capacity, and round-trips")
    func recentIDs() throws {
        var recent = RecentIDs(capacity: 5_000)
        // Reference: the filter as it was written before sharding, a Set and a ring of the last 5,000 new ids.
        var known = Set<String>()
        var ring: [String] = []
        var head = 0
        var rng = SplitMix(seed: 9)
        var snapshot: RecentIDs?
        var snapshotKnown: Set<String> = []
        for step in 0..<30_000 {
            let id = "s\(rng.next() % 12_000)"
            let isNew = known.insert(id).inserted
            if isNew {
                if ring.count < 5_000 {
                    ring.append(id)
                } else {
                    known.remove(ring[head])
                    ring[head] = id
                    head = (head + 1) % 5_000
                }
            }
            let accepted = recent.insert(id)
            #expect(accepted == isNew, "step \(step): \(id)")
            if step == 15_000 {
                snapshot = recent
                snapshotKnown = known
            }
        }
        // A snapshot keeps what it knew, and its checkpoint form restores a filter with the same answers.
        var restored = try StateBinaryDecoder().decode(RecentIDs.self,
                                                       from: try StateBinaryEncoder().encode(try #require(snapshot)))
        for id in snapshotKnown.prefix(200) {
            let accepted = restored.insert(id)
            #expect(!accepted, "\(id) was known at the snapshot")
        }
        for k in 0..<12_000 where k % 7 == 0 {
            let id = "s\(k)"
            var copy = recent
            let accepted = copy.insert(id)
            #expect(accepted == !known.contains(id))
        }
    }
}
