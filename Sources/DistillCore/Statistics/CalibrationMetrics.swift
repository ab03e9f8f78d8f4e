import Foundation

// MARK: - Calibration metrics on explicit samples
//
// Reference implementations over arrays: used for the reservoir-based figures (adaptive ECE, T*), for
// reporting, and by the tests. The streaming accumulators (`CalibrationStats`, `DistillPaneStats`) keep
// binned sums that give the same equal-width ECE.

/// One bin of a reliability diagram.
public struct ReliabilityBin: Sendable, Codable, Equatable {
    /// Lower edge of the bin (exclusive, except for the first bin).
    public var lower: Double
    /// Upper edge of the bin (inclusive).
    public var upper: Double
    /// Number of samples whose top-label confidence fell in the bin.
    public var count: Double
    /// Mean top-label confidence in the bin (0 when empty).
    public var meanConfidence: Double
    /// Share of correct top-1 predictions in the bin (0 when empty).
    public var accuracy: Double

    /// Creates a bin.
    public init(lower: Double, upper: Double, count: Double, meanConfidence: Double, accuracy: Double) {
        self.lower = lower
        self.upper = upper
        self.count = count
        self.meanConfidence = meanConfidence
        self.accuracy = accuracy
    }
}

/// Calibration metrics (all probabilities from softmax at the given temperature, logs natural, units nats).
public enum CalibrationMetrics {
    /// Default number of equal-width bins (Guo et al. 2017).
    public static let defaultBins = 15

    /// Bin of a confidence c ∈ [0, 1] among `bins` equal-width bins with edges (m−1)/M < c ≤ m/M
    /// (Guo et al. 2017, as in their reference code); c = 0 goes to the first bin.
    @inlinable
    public static func binIndex(_ confidence: Double, bins: Int) -> Int {
        let m = Int((confidence * Double(bins)).rounded(.up)) - 1
        return m < 0 ? 0 : (m >= bins ? bins - 1 : m)
    }

    /// Reliability bins of top-label confidences.
    public static func reliabilityBins(confidences: [Double], correct: [Bool], bins: Int = defaultBins)
        -> [ReliabilityBin] {
        precondition(confidences.count == correct.count, "reliabilityBins: lengths differ")
        var n = [Double](repeating: 0, count: bins)
        var conf = n
        var acc = n
        for i in confidences.indices {
            let b = binIndex(confidences[i], bins: bins)
            n[b] += 1
            conf[b] += confidences[i]
            if correct[i] { acc[b] += 1 }
        }
        return (0..<bins).map { b in
            ReliabilityBin(lower: Double(b) / Double(bins), upper: Double(b + 1) / Double(bins), count: n[b],
                           meanConfidence: n[b] > 0 ? conf[b] / n[b] : 0, accuracy: n[b] > 0 ? acc[b] / n[b] : 0)
        }
    }

    /// Expected calibration error, ECE = Σ_m (|B_m|/N) · |acc(B_m) − conf(B_m)| over equal-width bins of
    /// top-label confidence (Guo, Pleiss, Sun & Weinberger 2017, eq. 3). Range [0, 1]; 0 for no samples.
    public static func expectedCalibrationError(confidences: [Double], correct: [Bool], bins: Int = defaultBins)
        -> Double {
        guard !confidences.isEmpty else { return 0 }
        let rb = reliabilityBins(confidences: confidences, correct: correct, bins: bins)
        let total = Double(confidences.count)
        return rb.reduce(0) { $0 + $1.count / total * abs($1.accuracy - $1.meanConfidence) }
    }

    /// Maximum calibration error, MCE = max over non-empty bins of |acc − conf| (Guo et al. 2017, eq. 5).
    public static func maximumCalibrationError(confidences: [Double], correct: [Bool], bins: Int = defaultBins)
        -> Double {
        reliabilityBins(confidences: confidences, correct: correct, bins: bins)
            .filter { $0.count > 0 }
            .reduce(0) { max($0, abs($1.accuracy - $1.meanConfidence)) }
    }

    /// Adaptive (equal-mass) ECE (Nixon et al. 2019, "Measuring Calibration in Deep Learning"): samples
    /// sorted by confidence are split into `bins` groups of near-equal size (the first N mod M groups get
    /// one extra, like numpy.array_split); then the ECE formula over those groups.
    public static func adaptiveCalibrationError(confidences: [Double], correct: [Bool], bins: Int = defaultBins)
        -> Double {
        precondition(confidences.count == correct.count, "adaptiveCalibrationError: lengths differ")
        let n = confidences.count
        guard n > 0 else { return 0 }
        let order = confidences.indices.sorted { (confidences[$0], $0) < (confidences[$1], $1) }
        let m = min(bins, n)
        var start = 0
        var ece = 0.0
        for b in 0..<m {
            let size = n / m + (b < n % m ? 1 : 0)
            var conf = 0.0
            var acc = 0.0
            for k in start..<(start + size) {
                conf += confidences[order[k]]
                if correct[order[k]] { acc += 1 }
            }
            ece += abs(acc - conf) / Double(n)
            start += size
        }
        return ece
    }

    /// Class-wise ECE (Kull et al. 2019): (1/K) Σ_k Σ_m (|B_mk|/N) |freq_k(B_mk) − mean p_k(B_mk)|,
    /// bins on each class probability p_k. `probabilities` is flat N × K.
    public static func classwiseCalibrationError(probabilities: [Double], labels: [Int], classes: Int,
                                                 bins: Int = defaultBins) -> Double {
        let n = labels.count
        precondition(probabilities.count == n * classes, "classwiseCalibrationError: shape")
        guard n > 0 else { return 0 }
        var diff = [Double](repeating: 0, count: classes * bins)
        for i in 0..<n {
            for k in 0..<classes {
                let p = probabilities[i * classes + k]
                diff[k * bins + binIndex(p, bins: bins)] += (labels[i] == k ? 1 : 0) - p
            }
        }
        return diff.reduce(0) { $0 + abs($1) } / (Double(n) * Double(classes))
    }

    /// Mean negative log-likelihood −(1/N) Σ log softmax(z_i/T)_{y_i}, in nats, computed in Double.
    public static func negativeLogLikelihood(logits: [Float], labels: [Int], classes: Int, temperature: Double = 1)
        -> Double {
        precondition(logits.count == labels.count * classes, "negativeLogLikelihood: shape")
        guard !labels.isEmpty else { return 0 }
        var total = 0.0
        logits.withUnsafeBufferPointer { z in
            for i in labels.indices {
                let row = UnsafeBufferPointer(rebasing: z[i * classes ..< (i + 1) * classes])
                total += logSumExp(row, temperature: temperature) - Double(row[labels[i]]) / temperature
            }
        }
        return total / Double(labels.count)
    }

    /// Mean multi-class Brier score (Brier 1950): (1/N) Σ_i Σ_k (p_ik − 1[y_i = k])², range [0, 2].
    public static func brierScore(probabilities: [Double], labels: [Int], classes: Int) -> Double {
        precondition(probabilities.count == labels.count * classes, "brierScore: shape")
        guard !labels.isEmpty else { return 0 }
        var total = 0.0
        for i in labels.indices {
            for k in 0..<classes {
                let d = probabilities[i * classes + k] - (labels[i] == k ? 1 : 0)
                total += d * d
            }
        }
        return total / Double(labels.count)
    }

    /// Softmax probabilities in Double of one logit row at temperature T (numerically stable).
    public static func probabilities(_ logits: UnsafeBufferPointer<Float>, temperature: Double = 1,
                                     into out: inout [Double]) {
        out.removeAll(keepingCapacity: true)
        let lse = logSumExp(logits, temperature: temperature)
        for z in logits { out.append(exp(Double(z) / temperature - lse)) }
    }
}
