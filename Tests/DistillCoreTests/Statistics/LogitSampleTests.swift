@testable import DistillCore
import Foundation
import Testing

/// The bottom-k logit sample folds its offers in batches; it must keep exactly what inserting each offer into sorted
/// arrays kept (the definition it replaced), in the same order, through offers, merges and checkpoints.
@Suite("Bottom-k logit sample")
struct LogitSampleTests {
    /// The definition: sorted arrays, each offer inserted after the equal hashes already kept.
    struct Reference {
        let classes: Int, capacity: Int
        var hashes: [UInt64] = [], labels: [Int32] = [], logits: [Float] = []

        mutating func offer(_ hash: UInt64, _ row: [Float], _ label: Int) {
            if hashes.count == capacity {
                guard let last = hashes.last, hash < last else { return }
                hashes.removeLast(); labels.removeLast(); logits.removeLast(classes)
            }
            let at = hashes.firstIndex { $0 > hash } ?? hashes.count
            hashes.insert(hash, at: at)
            labels.insert(Int32(label), at: at)
            logits.insert(contentsOf: row, at: at * classes)
        }

        mutating func merge(_ other: Reference) {
            var merged = Reference(classes: classes, capacity: capacity)
            var i = 0, j = 0
            while merged.hashes.count < min(capacity, hashes.count + other.hashes.count) {
                if j >= other.hashes.count || (i < hashes.count && hashes[i] <= other.hashes[j]) {
                    merged.hashes.append(hashes[i]); merged.labels.append(labels[i])
                    merged.logits += logits[i * classes ..< (i + 1) * classes]; i += 1
                } else {
                    merged.hashes.append(other.hashes[j]); merged.labels.append(other.labels[j])
                    merged.logits += other.logits[j * classes ..< (j + 1) * classes]; j += 1
                }
            }
            self = merged
        }
    }

    static func check(_ s: LogitSample, _ r: Reference, _ note: String) {
        #expect(s.hashes == r.hashes && s.labels == r.labels && s.logits == r.logits, "\(note)")
        #expect(s.count == r.hashes.count, "\(note): count")
    }

    @Test("offers and merges keep what sorted insertion keeps, equal hashes in arrival order", arguments: [1, 7, 300])
    func matchesSortedInsertion(capacity: Int) throws {
        let c = 3
        var rng = SeededRandom(seed: UInt64(capacity))
        var parts = [LogitSample](repeating: LogitSample(classes: c, capacity: capacity), count: 3)
        var references = [Reference](repeating: Reference(classes: c, capacity: capacity), count: 3)
        for step in 0..<5_000 {
            // A small hash space, so equal hashes (the tie rule) are common; logits tell offers apart.
            let hash = rng.next() % 400
            let row: [Float] = [Float(step), Float(hash), -Float(step)]
            let label = Int(rng.next() % UInt64(c))
            let k = Int(rng.next() % 3)
            row.withUnsafeBufferPointer { parts[k].offer(hash: hash, logits: $0, label: label) }
            references[k].offer(hash, row, label)
            if step % 37 == 0 { Self.check(parts[k], references[k], "step \(step), part \(k)") }
            if step % 1_000 == 999 {
                // A merge mid-stream, with offers of both sides possibly unfolded.
                parts[0].merge(parts[1])
                references[0].merge(references[1])
                Self.check(parts[0], references[0], "merge at \(step)")
            }
        }
        for k in 0..<3 { Self.check(parts[k], references[k], "end, part \(k)") }
        // The checkpoint form is the folded arrays: it decodes to an equal sample with the same arrays.
        let data = try JSONEncoder().encode(parts[2])
        let decoded = try JSONDecoder().decode(LogitSample.self, from: data)
        #expect(decoded == parts[2])
        Self.check(decoded, references[2], "decoded")
    }

    /// Pruning each part above its union's `capacity`-th smallest hash must not change the union's bottom-k.
    @Test("parts pruned above their union's capacity-th smallest hash merge to the same sample, ties included",
          arguments: [5, 64])
    func pruneKeepsTheUnionsBottomK(capacity: Int) throws {
        let c = 2
        var rng = SeededRandom(seed: 40 + UInt64(capacity))
        let parts = 6
        var pruned = [LogitSample](repeating: LogitSample(classes: c, capacity: capacity), count: parts)
        var whole = pruned
        var references = [Reference](repeating: Reference(classes: c, capacity: capacity), count: parts)
        var bound = UInt64.max
        for step in 0..<4_000 {
            // A small hash space, so ties at the bound are common.
            let hash = rng.next() % 900
            let row: [Float] = [Float(step), -Float(step)]
            let label = Int(rng.next() % UInt64(c))
            let k = Int(rng.next() % UInt64(parts))
            row.withUnsafeBufferPointer {
                pruned[k].offer(hash: hash, logits: $0, label: label)
                whole[k].offer(hash: hash, logits: $0, label: label)
            }
            references[k].offer(hash, row, label)
            if step % 97 == 96 {
                // The bound: the capacity-th smallest hash over every part (as the window set computes it).
                let hashes = pruned.flatMap(\.hashes).sorted()
                if hashes.count > capacity {
                    bound = min(bound, hashes[capacity - 1])
                    for j in 0..<parts { pruned[j].prune(above: bound) }
                    for j in 0..<parts { #expect(pruned[j].hashes.allSatisfy { $0 <= bound }) }
                    // Everything the parts hold at most the bound stays: their union still has the capacity.
                    #expect(pruned.flatMap(\.hashes).count >= capacity)
                }
            }
            // Offers above the bound are refused.
            #expect(pruned[k].hashes.allSatisfy { $0 <= bound }, "step \(step)")
        }
        var mergedPruned = LogitSample(classes: c, capacity: capacity)
        var mergedWhole = mergedPruned
        var reference = Reference(classes: c, capacity: capacity)
        for j in 0..<parts {
            mergedPruned.merge(pruned[j])
            mergedWhole.merge(whole[j])
            reference.merge(references[j])
        }
        Self.check(mergedWhole, reference, "unpruned parts")
        Self.check(mergedPruned, reference, "pruned parts")
        // Pruned, the parts hold about one union's worth; unpruned, up to `parts` of them.
        let held = pruned.map(\.count).reduce(0, +), heldWhole = whole.map(\.count).reduce(0, +)
        #expect(held < heldWhole, "held \(held) of \(heldWhole)")
    }
}
