import DistillCore
import Foundation
import Numerics
import Testing

// MARK: - Poisson bootstrap

@Suite("Poisson bootstrap")
struct BootstrapTests {
    @Test("hash is FNV-1a 64 finished by the SplitMix64 mixer; known vectors")
    func hashVectors() {
        // FNV-1a 64 of "" is the offset basis; of "a" is 0xaf63dc4c8601ec8c (reference vectors).
        #expect(StableHash.id("") == StableHash.mix(0xcbf2_9ce4_8422_2325))
        #expect(StableHash.id("a") == StableHash.mix(0xaf63_dc4c_8601_ec8c))
        #expect(StableHash.id("foobar") == StableHash.mix(0x8594_4171_f739_67e8))
        // SplitMix64 reference: seed 0 → first output 0xe220a8397b1dcdaf.
        #expect(StableHash.splitMix(seed: 0, index: 0) == 0xe220_a839_7b1d_cdaf)
    }

    @Test("weights are replay-deterministic and Poisson(1): mean 1, variance 1, P(0) = e^-1")
    func poissonMoments() {
        let a = BootstrapWeights(replicates: 64, id: "req-1")
        let b = BootstrapWeights(replicates: 64, id: "req-1")
        let c = BootstrapWeights(replicates: 64, id: "req-2")
        #expect(a.values == b.values)
        #expect(a.values != c.values)
        #expect(a.values[0] == 1)
        var w = BootstrapWeights(replicates: 64)
        var n = 0.0, s = 0.0, s2 = 0.0, zeros = 0.0, twos = 0.0
        for i in 0..<20_000 {
            w.reset(idHash: StableHash.id("sample-\(i)"))
            for r in 1...64 {
                let x = w.values[r]
                n += 1; s += x; s2 += x * x
                if x == 0 { zeros += 1 }
                if x == 2 { twos += 1 }
            }
        }
        let mean = s / n
        let variance = s2 / n - mean * mean
        // n = 1.28M draws: standard errors ~0.001 (mean), ~0.0016 (variance), ~0.0004 (P(0)).
        #expect(abs(mean - 1) < 0.005)
        #expect(abs(variance - 1) < 0.01)
        #expect(abs(zeros / n - exp(-1.0)) < 0.002)
        #expect(abs(twos / n - exp(-1.0) / 2) < 0.002)
    }

    @Test("type-7 quantiles and percentile intervals")
    func quantiles() {
        let xs = [1.0, 2, 3, 4, 5]
        #expect(BootstrapEstimate.quantile(xs, 0) == 1)
        #expect(BootstrapEstimate.quantile(xs, 1) == 5)
        #expect(BootstrapEstimate.quantile(xs, 0.5) == 3)
        #expect(BootstrapEstimate.quantile(xs, 0.1).isApproximatelyEqual(to: 1.4))
        let e = BootstrapEstimate(point: 0.5, replicateValues: (0...100).map { Double($0) / 100 })
        #expect(e.lower.isApproximatelyEqual(to: 0.025))
        #expect(e.upper.isApproximatelyEqual(to: 0.975))
        #expect(e.replicates == 101)
    }

    @Test("ReplicatedSums merge equals accumulating the union")
    func mergeEqualsUnion() {
        var all = ReplicatedSums(width: 2, replicates: 16)
        var parts = [ReplicatedSums](repeating: ReplicatedSums(width: 2, replicates: 16), count: 3)
        var w = BootstrapWeights(replicates: 16)
        for i in 0..<500 {
            w.reset(idHash: StableHash.id("x\(i)"))
            let x = Double(i % 7) / 7
            all.count(0, weights: w); all.add(1, x, weights: w)
            parts[i % 3].count(0, weights: w); parts[i % 3].add(1, x, weights: w)
        }
        var merged = parts[0]
        merged.merge(parts[1]); merged.merge(parts[2])
        for r in 0...16 {
            #expect(merged.value(0, row: r) == all.value(0, row: r))  // counts: exact
            #expect(merged.value(1, row: r).isApproximatelyEqual(to: all.value(1, row: r), relativeTolerance: 1e-12))
        }
    }

    /// Simulates `windows` windows of n Bernoulli(p) trials (paired teacher correctness) and KL-like
    /// exponential values, and counts how often each 95 % interval covers the true value.
    @Test("95 % intervals cover the true accuracy, accuracy delta and mean KL about 95 % of the time (200 windows)")
    func coverage() {
        var rng = SeededRandom(seed: 2024)
        let windows = 200, n = 400
        let pOld = 0.85, pNew = 0.88
        let meanKL = 0.05
        var coverAcc = 0, coverDelta = 0, coverKL = 0
        var w = BootstrapWeights(replicates: 64)
        var id = 0
        for _ in 0..<windows {
            var s = ReplicatedSums(width: 4, replicates: 64)
            for _ in 0..<n {
                id += 1
                w.reset(idHash: StableHash.id("cov-\(id)"))
                let newOK = rng.bernoulli(pNew), oldOK = rng.bernoulli(pOld)
                s.count(0, weights: w)
                if newOK { s.count(1, weights: w) }
                if oldOK { s.count(2, weights: w) }
                s.add(3, -meanKL * log(max(rng.uniform(), 1e-300)), weights: w)
            }
            let acc = s.ratio(1, 0)!
            let delta = s.estimate { r in (s.value(1, row: r) - s.value(2, row: r)) / s.value(0, row: r) }!
            let kl = s.ratio(3, 0)!
            if acc.contains(pNew) { coverAcc += 1 }
            if delta.contains(pNew - pOld) { coverDelta += 1 }
            if kl.contains(meanKL) { coverKL += 1 }
        }
        let rates = [coverAcc, coverDelta, coverKL].map { Double($0) / Double(windows) }
        print("bootstrap coverage (accuracy, delta, KL) over \(windows) windows: \(rates)")
        // Binomial(200, 0.95) has sd 1.5 %; percentile intervals with B = 64 run slightly narrow.
        for r in rates { #expect(r >= 0.89 && r <= 0.99, "coverage \(rates)") }
    }
}

@Suite("Bootstrap coverage through the pipeline")
struct PipelineCoverageTests {
    /// 200 simulated windows of 400 samples from `StreamModel` (true agreement 0.985, student accuracy
    /// 0.9·0.985 + 0.1·0.015/3 = 0.887, teacher accuracy 0.9, quality gap 0.013), B = 64.
    @Test("DistillPaneStats intervals cover the true agreement, accuracies and gap about 95 % of the time")
    func coverage() {
        var rng = SeededRandom(seed: 77)
        let model = StreamModel()
        let key = DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old", student: "s1", pairedTeacher: "t-old")
        let truth = (agreement: 0.985, student: 0.887, teacher: 0.9, gap: 0.013)
        var covered = [0, 0, 0, 0]
        var weights = BootstrapWeights(replicates: 64)
        var id = 0
        let windows = 200
        for _ in 0..<windows {
            var stats = DistillPaneStats(classes: 4, replicates: 64)
            for _ in 0..<400 {
                let s = model.sample(id: id, ts: Int64(id), rng: &rng)
                id += 1
                weights.reset(idHash: StableHash.id(s.id))
                stats.add(s, key: key, weights: weights)
            }
            let f = stats.figures()
            if f.studentAgreement!.contains(truth.agreement) { covered[0] += 1 }
            if f.studentAccuracy!.contains(truth.student) { covered[1] += 1 }
            if f.pairedTeacherAccuracy!.contains(truth.teacher) { covered[2] += 1 }
            if f.qualityGap!.contains(truth.gap) { covered[3] += 1 }
        }
        let rates = covered.map { Double($0) / Double(windows) }
        print("pipeline coverage (agreement, student acc, teacher acc, gap): \(rates)")
        for r in rates { #expect(r >= 0.89 && r <= 0.99, "coverage \(rates)") }
    }
}
