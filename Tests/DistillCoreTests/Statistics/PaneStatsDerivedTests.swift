import DistillCore
import Foundation
import Testing

// MARK: - Shared per-sample figures give the same sums, bit for bit

@Suite("DistillPaneStats with per-sample derived figures")
struct PaneStatsDerivedTests {
    /// The pane update as first written: one `ReplicatedSums.add`/`count` per figure, softmaxes and KL recomputed
    /// from the logits with the public math functions.
    static func referenceAdd(_ sums: inout ReplicatedSums, _ sample: DistillSample, key: DistillGroupKey,
                             weights: BootstrapWeights, contribution: SampleContribution, bins: Int) {
        let c = sample.classes
        let unlabeled = contribution.contains(.unlabeled)
        let label = contribution.contains(.labeled) ? sample.label : nil
        let n = sample.teacherIndex(of: key.newTeacher)
        let o = key.oldTeacher.flatMap { sample.teacherIndex(of: $0) }
        let p = sample.teacherIndex(of: key.effectivePairedTeacher)
        func top(_ t: Int) -> (Int, Double) {
            let z = sample.teacherLogits(at: t)
            let i = argmax(z)
            var s = 0.0
            for v in z { s += exp(Double(v) - Double(z[i])) }
            return (i, 1 / s)
        }
        if let n, let o {
            if unlabeled {
                sums.count(DistillPaneStats.Column.klWeight, weights: weights)
                sums.add(DistillPaneStats.Column.klSum, klDivergence(sample.teacherLogits(at: n),
                                                                     sample.teacherLogits(at: o)), weights: weights)
            }
            if let y = label {
                let (nt, nc) = top(n), (ot, oc) = top(o)
                sums.count(DistillPaneStats.Column.teacherLabeled, weights: weights)
                if nt == y { sums.count(DistillPaneStats.Column.newCorrect, weights: weights) }
                if ot == y { sums.count(DistillPaneStats.Column.oldCorrect, weights: weights) }
                sums.add(DistillPaneStats.Column.newBins + CalibrationMetrics.binIndex(nc, bins: bins),
                         (nt == y ? 1 : 0) - nc, weights: weights)
                sums.add(DistillPaneStats.Column.newBins + bins + CalibrationMetrics.binIndex(oc, bins: bins),
                         (ot == y ? 1 : 0) - oc, weights: weights)
            }
        }
        if let p, sample.studentVersion != nil {
            let st = argmax(sample.studentLogits), pt = argmax(sample.teacherLogits(at: p))
            if unlabeled {
                sums.count(DistillPaneStats.Column.agreementWeight, weights: weights)
                if st == pt { sums.count(DistillPaneStats.Column.agreementHits, weights: weights) }
            }
            if let y = label {
                let classBase = DistillPaneStats.Column.newBins + 2 * bins
                sums.count(DistillPaneStats.Column.studentLabeled, weights: weights)
                sums.count(classBase + y, weights: weights)
                if st == y {
                    sums.count(DistillPaneStats.Column.studentCorrect, weights: weights)
                    sums.count(classBase + c + y, weights: weights)
                }
                if pt == y { sums.count(DistillPaneStats.Column.pairedCorrect, weights: weights) }
            }
        }
    }

    @Test("one derived cache per sample across panes and teacher pairs equals per-pane recomputation and the reference",
          arguments: [0, 1, 7, 64])
    func derivedMatchesReference(replicates: Int) {
        var rng = SeededRandom(seed: 4242 &+ UInt64(replicates))
        let c = 6, bins = 15
        // Two teacher pairs, a slice group and a student filter: several distinct plans per sample.
        let keys = [
            DistillGroupKey(newTeacher: "t2", oldTeacher: "t1"),
            DistillGroupKey(newTeacher: "t2", oldTeacher: "t1", slice: "web"),
            DistillGroupKey(newTeacher: "t3", oldTeacher: "t2", pairedTeacher: "t2"),
            DistillGroupKey(newTeacher: "t1", oldTeacher: nil, student: "s1"),
            DistillGroupKey(newTeacher: "t2", oldTeacher: "t1", student: "s1", pairedTeacher: "t1"),
        ]
        let empty = DistillPaneStats(classes: c, replicates: replicates, bins: bins)
        // Two panes per key (as two windows), fed with a shared cache, plus per-call and reference copies.
        var shared = [[DistillPaneStats]](repeating: [empty, empty], count: keys.count)
        var perCall = [DistillPaneStats](repeating: empty, count: keys.count)
        var reference = [ReplicatedSums](repeating: empty.sums, count: keys.count)
        let contributions: [SampleContribution] = [.all, .unlabeled, .labeled, .all]
        for i in 0..<1200 {
            let teacherSets = [["t1", "t2"], ["t2", "t1", "t3"], ["t2"], ["t3", "t2"], ["t1"]]
            let s = randomSample(id: i, ts: Int64(i), classes: c, rng: &rng, teachers: teacherSets[i % 5],
                                 student: i % 3 == 0 ? nil : "s1", slice: i % 2 == 0 ? "web" : "ios")
            let weights = BootstrapWeights(replicates: replicates, id: s.id)
            let contribution = contributions[i % contributions.count]
            var derived = DistillSampleDerived()
            for pane in 0..<2 {
                for (k, key) in keys.enumerated() where key.matches(s) {
                    shared[k][pane].add(s, key: key, weights: weights, contribution: contribution, derived: &derived)
                }
            }
            for (k, key) in keys.enumerated() where key.matches(s) {
                perCall[k].add(s, key: key, weights: weights, contribution: contribution)
                Self.referenceAdd(&reference[k], s, key: key, weights: weights, contribution: contribution,
                                  bins: bins)
            }
        }
        for k in keys.indices {
            #expect(shared[k][0].sums.values == reference[k].values, "key \(keys[k])")
            #expect(shared[k][1].sums.values == reference[k].values, "key \(keys[k])")
            #expect(perCall[k].sums.values == reference[k].values, "key \(keys[k])")
            #expect(reference[k].value(DistillPaneStats.Column.klWeight) > 0
                    || keys[k].oldTeacher == nil, "the key must see samples")
        }
    }

    @Test("ReplicatedSums.apply and the vectorised add/count equal a scalar loop", arguments: [0, 1, 7, 8, 9, 64, 100])
    func applyMatchesScalar(replicates: Int) {
        var rng = SeededRandom(seed: UInt64(replicates) + 1)
        let width = 20
        var sums = ReplicatedSums(width: width, replicates: replicates)
        var batched = sums
        var expected = [Double](repeating: 0, count: width * (replicates + 1))
        for i in 0..<300 {
            let weights = BootstrapWeights(replicates: replicates, id: "w\(i)")
            var update = ReplicatedUpdate()
            var columns = Array(0..<width)
            columns.shuffle(using: &rng)
            for column in columns.prefix(1 + rng.int(ReplicatedUpdate.capacity)) {
                let isCount = rng.bernoulli(0.5)
                let x = rng.normal()
                if isCount { sums.count(column, weights: weights); update.count(column) } else {
                    sums.add(column, x, weights: weights); update.add(column, x)
                }
                for r in 0...replicates {
                    expected[column * (replicates + 1) + r] += isCount ? weights.values[r] : weights.values[r] * x
                }
            }
            batched.apply(update, weights: weights)
        }
        #expect(sums.values == expected)
        #expect(batched.values == expected)
    }

    @Test("Poisson weights equal PoissonOne.draw of the SplitMix64 stream", arguments: [0, 1, 64, 129])
    func weightsMatchDefinition(replicates: Int) {
        var rng = SeededRandom(seed: 77)
        var weights = BootstrapWeights(replicates: replicates)
        for _ in 0..<2000 {
            let hash = rng.next()
            weights.reset(idHash: hash)
            var expected: [Double] = [1]
            if replicates > 0 {
                for r in 1...replicates {
                    expected.append(Double(PoissonOne.draw(uniformBits: StableHash.splitMix(seed: hash,
                                                                                            index: UInt64(r)))))
                }
            }
            #expect(weights.values == expected)
        }
    }
}
