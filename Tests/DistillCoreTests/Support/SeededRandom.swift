import DistillCore
import Foundation

// MARK: - Deterministic randomness for tests

/// SplitMix64 as a `RandomNumberGenerator`: deterministic across runs and platforms.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Standard normal (Box–Muller).
    mutating func normal() -> Double {
        let u1 = max(uniform(), 1e-300)
        let u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }

    /// True with probability p.
    mutating func bernoulli(_ p: Double) -> Bool { uniform() < p }

    /// Uniform integer in 0..<n.
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

// MARK: - Independent Double re-computations

enum Reference {
    /// Softmax in Double at T.
    static func softmax(_ z: [Float], temperature: Double = 1) -> [Double] {
        let m = z.map(Double.init).max()!
        let e = z.map { exp((Double($0) - m) / temperature) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    /// KL(softmax(a) ‖ softmax(b)) in Double, straightforward.
    static func kl(_ a: [Float], _ b: [Float]) -> Double {
        let p = softmax(a), q = softmax(b)
        var s = 0.0
        for i in p.indices where p[i] > 0 { s += p[i] * log(p[i] / q[i]) }
        return s
    }

    /// First index of the maximum.
    static func argmax(_ z: [Float]) -> Int {
        var best = 0
        for i in z.indices where z[i] > z[best] { best = i }
        return best
    }

    /// ECE with explicit bin edges (lo, hi], bins M, straightforward double loop (Guo et al. 2017).
    static func ece(_ conf: [Double], _ correct: [Bool], bins: Int = 15) -> Double {
        var total = 0.0
        for m in 0..<bins {
            let lo = Double(m) / Double(bins), hi = Double(m + 1) / Double(bins)
            var n = 0.0, c = 0.0, a = 0.0
            for i in conf.indices where (conf[i] > lo || (m == 0 && conf[i] >= 0)) && conf[i] <= hi {
                n += 1; c += conf[i]; a += correct[i] ? 1 : 0
            }
            if n > 0 { total += n / Double(conf.count) * abs(a / n - c / n) }
        }
        return total
    }
}

// MARK: - Synthetic sample streams

/// Builds logits for a C-class model whose prediction is `predicted` with calibrated-ish confidence.
func syntheticLogits(classes: Int, predicted: Int, margin: Double, noise: Double, rng: inout SeededRandom) -> [Float] {
    var z = [Float](repeating: 0, count: classes)
    for k in 0..<classes { z[k] = Float(noise * rng.normal()) }
    z[predicted] += Float(margin)
    return z
}

/// Margin m such that softmax top probability ≈ p for noise-free logits: e^m / (e^m + C − 1) = p.
func calibratedMargin(accuracy p: Double, classes: Int) -> Double {
    log(p * Double(classes - 1) / (1 - p))
}

/// A knob-driven sample stream for scenario tests (teachers `t-old`, `t-new`, student `s1` paired with t-old).
struct StreamModel {
    var classes = 4
    var oldAccuracy = 0.90
    var newAccuracy = 0.90
    /// Extra margin on the new teacher's logits (over-confidence → ECE).
    var newExtraMargin = 0.0
    /// Std-dev of noise added to new teacher logits on top of the old (drives KL).
    var newTeacherShift = 0.05
    /// Student agreement with the paired (old) teacher.
    var agreement = 0.985
    /// Probability that, where the paired teacher is right, the student switches to a wrong class.
    var studentExtraError = 0.0
    /// Extra error rate of the student on the rare class (class `classes-1`).
    var rareClassExtraError = 0.0
    /// Probability of the rare class.
    var rareFrequency = 0.10
    var labeled = 1.0

    func sample(id: Int, ts: Int64, rng: inout SeededRandom) -> DistillSample {
        let c = classes
        let rare = c - 1
        let y = rng.bernoulli(rareFrequency) ? rare : rng.int(c - 1)
        func predict(_ acc: Double) -> Int {
            if rng.bernoulli(acc) { return y }
            var k = rng.int(c - 1)
            if k >= y { k += 1 }
            return k
        }
        let oldPred = predict(oldAccuracy)
        let old = syntheticLogits(classes: c, predicted: oldPred,
                                  margin: calibratedMargin(accuracy: oldAccuracy, classes: c), noise: 0.1, rng: &rng)
        var new: [Float]
        if newAccuracy == oldAccuracy && newExtraMargin == 0 {
            new = old.map { $0 + Float(newTeacherShift * rng.normal()) }
        } else {
            // Keep the new teacher's prediction correlated with the old one: redraw only as needed.
            let newPred: Int
            if newAccuracy >= oldAccuracy {
                let flip = (newAccuracy - oldAccuracy) / (1 - oldAccuracy)
                newPred = (oldPred == y || !rng.bernoulli(flip)) ? oldPred : y
            } else {
                newPred = (oldPred != y || !rng.bernoulli((oldAccuracy - newAccuracy) / oldAccuracy))
                    ? oldPred : (y + 1 + rng.int(c - 1)) % c
            }
            new = syntheticLogits(classes: c, predicted: newPred,
                                  margin: calibratedMargin(accuracy: newAccuracy, classes: c) + newExtraMargin,
                                  noise: 0.1, rng: &rng)
        }
        // Student: agrees with the old teacher with probability `agreement`.
        var studentPred = oldPred
        if !rng.bernoulli(agreement) {
            var k = rng.int(c - 1)
            if k >= oldPred { k += 1 }
            studentPred = k
        }
        if oldPred == y && studentPred == y && rng.bernoulli(studentExtraError) {
            studentPred = (y + 1) % c
        }
        if y == rare && studentPred == y && rng.bernoulli(rareClassExtraError) {
            studentPred = (y + 1) % c
        }
        let student = syntheticLogits(classes: c, predicted: studentPred, margin: 2, noise: 0.1, rng: &rng)
        return DistillSample(id: "req-\(id)", timestamp: ts, classes: c, teacherVersions: ["t-old", "t-new"],
                             teacherLogits: old + new, studentVersion: "s1", studentLogits: student,
                             label: rng.bernoulli(labeled) ? y : nil, slice: id % 2 == 0 ? "a" : "b")
    }
}

/// Random sample with arbitrary logits for statistics tests.
func randomSample(id: Int, ts: Int64, classes: Int, rng: inout SeededRandom, teachers: [String] = ["t-old", "t-new"],
                  student: String? = "s1", labelProbability: Double = 0.8, slice: String? = nil) -> DistillSample {
    var logits: [Float] = []
    for _ in teachers { logits += (0..<classes).map { _ in Float(rng.normal() * 2) } }
    let studentLogits: [Float] = student == nil ? [] : (0..<classes).map { _ in Float(rng.normal() * 2) }
    return DistillSample(id: "id-\(id)", timestamp: ts, classes: classes, teacherVersions: teachers,
                         teacherLogits: logits, studentVersion: student, studentLogits: studentLogits,
                         label: rng.bernoulli(labelProbability) ? rng.int(classes) : nil, slice: slice)
}
