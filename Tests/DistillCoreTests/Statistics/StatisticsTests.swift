import DistillCore
import Foundation
import Numerics
import Testing

// MARK: - Statistics against independent re-computation

@Suite("Statistics")
struct StatisticsTests {
    @Test("ECE worked example (Guo et al. 2017 definition, 15 bins (lo, hi])")
    func eceWorkedExample() {
        // Bins: 0.95 → bin 14, 0.55 → bin 8, 0.8 → (0.7333, 0.8] = bin 11, 0.2 → (0.1333, 0.2] = bin 2.
        // bin14: n=2, acc 0.5, conf 0.95 → 2/6·0.45 = 0.15
        // bin8:  n=2, acc 1.0, conf 0.55 → 2/6·0.45 = 0.15
        // bin11: n=1, acc 1.0, conf 0.8  → 1/6·0.2  = 0.0333…
        // bin2:  n=1, acc 0.0, conf 0.2  → 1/6·0.2  = 0.0333…   ECE = 0.3666…
        let conf = [0.95, 0.95, 0.55, 0.55, 0.8, 0.2]
        let ok = [true, false, true, true, true, false]
        let ece = CalibrationMetrics.expectedCalibrationError(confidences: conf, correct: ok)
        #expect(ece.isApproximatelyEqual(to: 0.3 + 0.4 / 6, absoluteTolerance: 1e-12))
        #expect(ece.isApproximatelyEqual(to: Reference.ece(conf, ok), absoluteTolerance: 1e-12))
        #expect(CalibrationMetrics.maximumCalibrationError(confidences: conf, correct: ok)
            .isApproximatelyEqual(to: 0.45, absoluteTolerance: 1e-12))
        // Boundary: 1/15 exactly belongs to bin 0 ((0, 1/15]); 0.8 = 12/15 to bin 11.
        #expect(CalibrationMetrics.binIndex(1.0 / 15, bins: 15) == 0)
        #expect(CalibrationMetrics.binIndex(1.0, bins: 15) == 14)
    }

    @Test("adaptive ECE worked example: equal-mass bins")
    func adaptiveECE() {
        // 6 samples, 3 bins of 2 by sorted confidence: {0.2, 0.55}, {0.55, 0.8}, {0.95, 0.95}.
        // bin A: conf 0.75 total, correct 1 (0.55 ok, 0.2 not) → |1 − 0.75| = 0.25
        // bin B: conf 1.35, correct 2 → 0.65; bin C: conf 1.9, correct 1 → 0.9. ECE = (0.25+0.65+0.9)/6 = 0.3
        let conf = [0.95, 0.95, 0.55, 0.55, 0.8, 0.2]
        let ok = [true, false, true, true, true, false]
        let a = CalibrationMetrics.adaptiveCalibrationError(confidences: conf, correct: ok, bins: 3)
        #expect(a.isApproximatelyEqual(to: 0.3, absoluteTolerance: 1e-12))
    }

    @Test("NLL and Brier on a worked example")
    func nllBrier() {
        // logits [0, ln 3] → p = [0.25, 0.75]; label 1 → NLL = −ln 0.75; Brier = 0.25² + 0.25² = 0.125.
        let z: [Float] = [0, Float(log(3.0))]
        let nll = CalibrationMetrics.negativeLogLikelihood(logits: z, labels: [1], classes: 2)
        #expect(nll.isApproximatelyEqual(to: -log(0.75), absoluteTolerance: 1e-6))
        let p = Reference.softmax(z)
        #expect(CalibrationMetrics.brierScore(probabilities: p, labels: [1], classes: 2)
            .isApproximatelyEqual(to: 0.125, absoluteTolerance: 1e-6))
    }

    @Test("fitted temperature matches a fine grid search and recovers the generating temperature")
    func temperatureFit() {
        var rng = SeededRandom(seed: 5)
        let c = 5, n = 3000, trueT = 2.0
        var logits: [Float] = [], labels: [Int] = []
        for _ in 0..<n {
            let z = (0..<c).map { _ in Float(rng.normal() * 3) }
            let p = Reference.softmax(z, temperature: trueT)
            var u = rng.uniform(), y = 0
            while y < c - 1 && u >= p[y] { u -= p[y]; y += 1 }
            logits += z; labels.append(y)
        }
        let fit = TemperatureScaling.fit(logits: logits, labels: labels, classes: c)!
        #expect(fit.converged && !fit.atBound)
        // Brute-force grid in log T (step 1e-4) on [0.5, 8].
        var bestT = 0.0, bestNLL = Double.infinity
        var logT = log(0.5)
        while logT <= log(8.0) {
            let t = exp(logT)
            let v = CalibrationMetrics.negativeLogLikelihood(logits: logits, labels: labels, classes: c, temperature: t)
            if v < bestNLL { bestNLL = v; bestT = t }
            logT += 1e-3
        }
        #expect(abs(log(fit.temperature) - log(bestT)) < 1.5e-3)
        #expect(fit.negativeLogLikelihood <= bestNLL + 1e-9)
        #expect(abs(fit.temperature - trueT) < 0.15)
        #expect(fit.iterations < 20)
    }

    @Test("temperature fit hits the bound for perfectly separated data")
    func temperatureBound() {
        let fit = TemperatureScaling.fit(logits: [5, 0, 0, 5], labels: [0, 1], classes: 2, range: 0.05...20)!
        #expect(fit.atBound && fit.temperature == 0.05)
    }

    /// Independent re-computation of every DistillPaneStats point figure.
    @Test("pane statistics equal straightforward Double re-computation")
    func paneStatsMatchReference() throws {
        var rng = SeededRandom(seed: 99)
        let c = 5
        let key = DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old", student: "s1", pairedTeacher: "t-old")
        var stats = DistillPaneStats(classes: c, replicates: 32)
        var samples: [DistillSample] = []
        for i in 0..<1500 {
            let s = randomSample(id: i, ts: Int64(i), classes: c, rng: &rng, teachers: i % 10 == 0 ? ["t-new"]
                                 : ["t-old", "t-new"], student: i % 7 == 0 ? nil : "s1")
            samples.append(s)
            stats.add(s, key: key, weights: BootstrapWeights(replicates: 32, id: s.id))
        }
        var klSum = 0.0, klN = 0.0, agree = 0.0, agreeN = 0.0
        var newOK = 0.0, oldOK = 0.0, tN = 0.0, sOK = 0.0, pOK = 0.0, sN = 0.0
        var newConf: [Double] = [], newCorrect: [Bool] = [], oldConf: [Double] = [], oldCorrect: [Bool] = []
        var classN = [Double](repeating: 0, count: c), classOK = classN
        for s in samples {
            guard let o = s.teacherIndex(of: "t-old"), let n = s.teacherIndex(of: "t-new") else {
                if let n = s.teacherIndex(of: "t-new"), s.studentVersion != nil {
                    _ = n  // paired teacher (t-old) missing: no student figures either
                }
                continue
            }
            let zn = s.teacherLogits(at: n), zo = s.teacherLogits(at: o)
            klSum += Reference.kl(zn, zo); klN += 1
            if let y = s.label {
                tN += 1
                let pn = Reference.softmax(zn), po = Reference.softmax(zo)
                let an = Reference.argmax(zn), ao = Reference.argmax(zo)
                newOK += an == y ? 1 : 0; oldOK += ao == y ? 1 : 0
                newConf.append(pn[an]); newCorrect.append(an == y)
                oldConf.append(po[ao]); oldCorrect.append(ao == y)
            }
            if s.studentVersion != nil {
                let a = Reference.argmax(s.studentLogits), t = Reference.argmax(zo)
                agreeN += 1; agree += a == t ? 1 : 0
                if let y = s.label {
                    sN += 1; sOK += a == y ? 1 : 0; pOK += t == y ? 1 : 0
                    classN[y] += 1; classOK[y] += a == y ? 1 : 0
                }
            }
        }
        let f = stats.figures()
        let tol = 1e-9
        #expect(f.klSamples == klN && f.teacherLabeledSamples == tN && f.studentLabeledSamples == sN)
        #expect(try #require(f.teacherKL).value.isApproximatelyEqual(to: klSum / klN, relativeTolerance: 1e-6))
        #expect(try #require(f.studentAgreement).value.isApproximatelyEqual(to: agree / agreeN, absoluteTolerance: tol))
        #expect(try #require(f.newTeacherAccuracy).value.isApproximatelyEqual(to: newOK / tN, absoluteTolerance: tol))
        #expect(try #require(f.oldTeacherAccuracy).value.isApproximatelyEqual(to: oldOK / tN, absoluteTolerance: tol))
        #expect(try #require(f.teacherAccuracyDelta).value
            .isApproximatelyEqual(to: (newOK - oldOK) / tN, absoluteTolerance: tol))
        let eceNew = Reference.ece(newConf, newCorrect), eceOld = Reference.ece(oldConf, oldCorrect)
        #expect(try #require(f.newTeacherECE).value.isApproximatelyEqual(to: eceNew, absoluteTolerance: 1e-6))
        #expect(try #require(f.oldTeacherECE).value.isApproximatelyEqual(to: eceOld, absoluteTolerance: 1e-6))
        #expect(try #require(f.teacherECEDelta).value
            .isApproximatelyEqual(to: eceNew - eceOld, absoluteTolerance: 1e-6))
        #expect(try #require(f.studentAccuracy).value.isApproximatelyEqual(to: sOK / sN, absoluteTolerance: tol))
        #expect(try #require(f.pairedTeacherAccuracy).value.isApproximatelyEqual(to: pOK / sN, absoluteTolerance: tol))
        #expect(try #require(f.qualityGap).value.isApproximatelyEqual(to: (pOK - sOK) / sN, absoluteTolerance: tol))
        for k in 0..<c {
            #expect(f.perClass[k].samples == classN[k])
            #expect(try #require(f.perClass[k].studentAccuracy).value
                .isApproximatelyEqual(to: classOK[k] / classN[k], absoluteTolerance: tol))
        }
        // Intervals bracket the point and are non-degenerate.
        let acc = try #require(f.newTeacherAccuracy)
        #expect(acc.lower < acc.value && acc.value < acc.upper && acc.replicates == 32)
    }

    @Test("merging panes equals computing on the union")
    func mergeEqualsUnion() {
        var rng = SeededRandom(seed: 3)
        let c = 4
        let key = DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old")
        var union = DistillPaneStats(classes: c, replicates: 16)
        var parts = [DistillPaneStats](repeating: DistillPaneStats(classes: c, replicates: 16), count: 4)
        var calUnion = CalibrationStats(classes: c, replicates: 16, sampleCapacity: 300)
        var calParts = [CalibrationStats](repeating: calUnion, count: 4)
        for i in 0..<1000 {
            let s = randomSample(id: i, ts: Int64(i), classes: c, rng: &rng)
            let w = BootstrapWeights(replicates: 16, id: s.id)
            let p = rng.int(4)
            union.add(s, key: key, weights: w)
            parts[p].add(s, key: key, weights: w)
            if let y = s.label {
                s.withTeacherLogits(at: 0) { z in
                    calUnion.add(logits: z, label: y, idHash: StableHash.id(s.id), weights: w)
                    calParts[p].add(logits: z, label: y, idHash: StableHash.id(s.id), weights: w)
                }
            }
        }
        var merged = parts[3]
        merged.merge(parts[1]); merged.merge(parts[0]); merged.merge(parts[2])
        for i in union.sums.values.indices {
            #expect(merged.sums.values[i].isApproximatelyEqual(to: union.sums.values[i], absoluteTolerance: 1e-9))
        }
        #expect(merged.figures().newTeacherECE!.value
            .isApproximatelyEqual(to: union.figures().newTeacherECE!.value, absoluteTolerance: 1e-12))
        var calMerged = calParts[2]
        calMerged.merge(calParts[0]); calMerged.merge(calParts[3]); calMerged.merge(calParts[1])
        #expect(calMerged.sample == calUnion.sample)  // bottom-k sample: exactly equal
        #expect(calMerged.binCount == calUnion.binCount)
        let a = calMerged.summary(), b = calUnion.summary()
        #expect(a.ece!.value.isApproximatelyEqual(to: b.ece!.value, absoluteTolerance: 1e-12))
        #expect(a.ece!.lower.isApproximatelyEqual(to: b.ece!.lower, absoluteTolerance: 1e-12))
        #expect(a.fittedTemperature == b.fittedTemperature || a.fittedTemperature!.temperature
            .isApproximatelyEqual(to: b.fittedTemperature!.temperature, relativeTolerance: 1e-9))
    }

    @Test("two-step label join (unlabeled on arrival, labeled later) equals one-step ingest")
    func twoStepJoin() {
        var rng = SeededRandom(seed: 12)
        let key = DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old", student: "s1", pairedTeacher: "t-old")
        var one = DistillPaneStats(classes: 4, replicates: 8), two = one
        for i in 0..<500 {
            let s = randomSample(id: i, ts: Int64(i), classes: 4, rng: &rng, labelProbability: 1)
            let w = BootstrapWeights(replicates: 8, id: s.id)
            one.add(s, key: key, weights: w)
            var unlabeled = s
            unlabeled.label = nil
            two.add(unlabeled, key: key, weights: w, contribution: .unlabeled)
            two.add(s, key: key, weights: w, contribution: .labeled)
        }
        #expect(one == two)
    }

    @Test("calibration statistics equal the array reference metrics")
    func calibrationStatsMatchReference() throws {
        var rng = SeededRandom(seed: 17)
        let c = 6
        var stats = CalibrationStats(classes: c, replicates: 8, sampleCapacity: 5000)
        var logits: [Float] = [], labels: [Int] = [], probs: [Double] = [], conf: [Double] = [], ok: [Bool] = []
        for i in 0..<2000 {
            let z = (0..<c).map { _ in Float(rng.normal() * 2.5) }
            let y = rng.bernoulli(0.6) ? Reference.argmax(z) : rng.int(c)
            z.withUnsafeBufferPointer { stats.add(logits: $0, label: y, idHash: StableHash.id("c\(i)"),
                                                  weights: BootstrapWeights(replicates: 8, id: "c\(i)")) }
            let p = Reference.softmax(z)
            logits += z; labels.append(y); probs += p
            conf.append(p.max()!); ok.append(Reference.argmax(z) == y)
        }
        let s = stats.summary()
        #expect(s.samples == 2000)
        #expect(try #require(s.ece).value.isApproximatelyEqual(to: Reference.ece(conf, ok), absoluteTolerance: 1e-9))
        #expect(try #require(s.mce).isApproximatelyEqual(
            to: CalibrationMetrics.maximumCalibrationError(confidences: conf, correct: ok), absoluteTolerance: 1e-9))
        #expect(try #require(s.adaptiveECE).isApproximatelyEqual(
            to: CalibrationMetrics.adaptiveCalibrationError(confidences: conf, correct: ok), absoluteTolerance: 1e-9))
        #expect(try #require(s.classwiseECE).isApproximatelyEqual(
            to: CalibrationMetrics.classwiseCalibrationError(probabilities: probs, labels: labels, classes: c),
            absoluteTolerance: 1e-9))
        #expect(try #require(s.nll).value.isApproximatelyEqual(
            to: CalibrationMetrics.negativeLogLikelihood(logits: logits, labels: labels, classes: c),
            absoluteTolerance: 1e-9))
        #expect(try #require(s.brier).value.isApproximatelyEqual(
            to: CalibrationMetrics.brierScore(probabilities: probs, labels: labels, classes: c),
            absoluteTolerance: 1e-9))
        #expect(try #require(s.accuracy).value.isApproximatelyEqual(
            to: Double(ok.filter { $0 }.count) / 2000, absoluteTolerance: 1e-12))
        let fit = try #require(s.fittedTemperature)
        let direct = try #require(TemperatureScaling.fit(logits: logits, labels: labels, classes: c))
        #expect(fit.temperature.isApproximatelyEqual(to: direct.temperature, relativeTolerance: 1e-6))
        let binsTotal = s.bins.reduce(0) { $0 + $1.count }
        #expect(binsTotal == 2000)
    }
}
