import Foundation

// MARK: - Per-model calibration sufficient statistics

/// Mergeable calibration statistics of one model version over one pane (or window), labeled samples only.
///
/// Kept: replicated sums of count, correct, NLL, Brier and per-bin Σ(1[correct] − confidence) (for ECE with
/// an interval); point-only per-bin count/confidence/correct (reliability diagram, MCE) and class-wise bin
/// sums; and a bottom-k sample by id hash (`LogitSample`) for adaptive ECE and the temperature fit. The
/// bottom-k sample is exactly mergeable and replay-deterministic; it holds every sample while the window has
/// at most `sampleCapacity` of them, and a uniform hash-chosen subset beyond.
public struct CalibrationStats: Sendable, Codable, Equatable {
    /// Number of classes C.
    public let classes: Int
    /// Number of equal-width bins.
    public let bins: Int
    /// Replicated sums: 0 count, 1 correct, 2 NLL, 3 Brier, 4..<4+bins bin differences.
    public private(set) var sums: ReplicatedSums
    /// Point count per bin.
    public private(set) var binCount: [Double]
    /// Point Σ confidence per bin.
    public private(set) var binConfidence: [Double]
    /// Point Σ 1[correct] per bin.
    public private(set) var binCorrect: [Double]
    /// Point Σ (1[y = k] − p_k) per (class k, bin of p_k), flat C × bins.
    public private(set) var classwiseDifference: [Double]
    /// Bottom-k sample of (logits, label) for adaptive ECE and T*.
    public private(set) var sample: LogitSample

    /// Empty statistics.
    public init(classes: Int, replicates: Int, bins: Int = CalibrationMetrics.defaultBins,
                sampleCapacity: Int = 2048) {
        self.classes = classes
        self.bins = bins
        self.sums = ReplicatedSums(width: 4 + bins, replicates: replicates)
        self.binCount = [Double](repeating: 0, count: bins)
        self.binConfidence = binCount
        self.binCorrect = binCount
        self.classwiseDifference = [Double](repeating: 0, count: classes * bins)
        self.sample = LogitSample(classes: classes, capacity: sampleCapacity)
    }

    enum CodingKeys: String, CodingKey {
        case classes, bins, sums, binCount, binConfidence, binCorrect, classwiseDifference, sample
    }

    /// Decodes and checks every array's shape against `classes` and `bins`.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        classes = try c.decode(Int.self, forKey: .classes)
        bins = try c.decode(Int.self, forKey: .bins)
        sums = try c.decode(ReplicatedSums.self, forKey: .sums)
        binCount = try c.decodePacked(Double.self, forKey: .binCount)
        binConfidence = try c.decodePacked(Double.self, forKey: .binConfidence)
        binCorrect = try c.decodePacked(Double.self, forKey: .binCorrect)
        classwiseDifference = try c.decodePacked(Double.self, forKey: .classwiseDifference)
        sample = try c.decode(LogitSample.self, forKey: .sample)
        guard classes >= 1, bins >= 1, sums.width == 4 + bins, binCount.count == bins, binConfidence.count == bins,
              binCorrect.count == bins, classwiseDifference.count == classes * bins, sample.classes == classes
        else {
            throw DecodingError.dataCorruptedError(forKey: .sums, in: c,
                                                   debugDescription: "CalibrationStats: shape mismatch")
        }
    }

    /// Encodes the arrays packed (`PackedNumbers`).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(classes, forKey: .classes)
        try c.encode(bins, forKey: .bins)
        try c.encode(sums, forKey: .sums)
        try c.encodePacked(binCount, forKey: .binCount)
        try c.encodePacked(binConfidence, forKey: .binConfidence)
        try c.encodePacked(binCorrect, forKey: .binCorrect)
        try c.encodePacked(classwiseDifference, forKey: .classwiseDifference)
        try c.encode(sample, forKey: .sample)
    }

    /// Adds one labeled prediction: `logits` (C values, T = 1), the true `label`, the id hash and weights.
    public mutating func add(logits: UnsafeBufferPointer<Float>, label: Int, idHash: UInt64,
                             weights: BootstrapWeights) {
        precondition(logits.count == classes, "CalibrationStats.add: logits length")
        let lse = logSumExp(logits)
        let top = argmax(logits)
        var brier = 0.0
        var confidence = 0.0
        for k in 0..<classes {
            let p = exp(Double(logits[k]) - lse)
            let y = k == label ? 1.0 : 0.0
            brier += (p - y) * (p - y)
            if k == top { confidence = p }
            classwiseDifference[k * bins + CalibrationMetrics.binIndex(p, bins: bins)] += y - p
        }
        let correct = top == label ? 1.0 : 0.0
        let b = CalibrationMetrics.binIndex(confidence, bins: bins)
        sums.count(0, weights: weights)
        if correct > 0 { sums.count(1, weights: weights) }
        sums.add(2, lse - Double(logits[label]), weights: weights)
        sums.add(3, brier, weights: weights)
        sums.add(4 + b, correct - confidence, weights: weights)
        binCount[b] += 1
        binConfidence[b] += confidence
        binCorrect[b] += correct
        sample.offer(hash: idHash, logits: logits, label: label)
    }

    /// Adds another pane's statistics.
    public mutating func merge(_ other: CalibrationStats) {
        precondition(classes == other.classes && bins == other.bins, "CalibrationStats.merge: shape mismatch")
        sums.merge(other.sums)
        for b in 0..<bins {
            binCount[b] += other.binCount[b]
            binConfidence[b] += other.binConfidence[b]
            binCorrect[b] += other.binCorrect[b]
        }
        for i in classwiseDifference.indices { classwiseDifference[i] += other.classwiseDifference[i] }
        sample.merge(other.sample)
    }

    /// Number of labeled samples.
    public var count: Double { sums.value(0) }

    /// Computes the calibration summary (intervals at `level`; T* fitted in `temperatureRange`).
    public func summary(level: Double = 0.95, temperatureRange: ClosedRange<Double> = 0.05...20)
        -> CalibrationSummary {
        let s = sums
        let n = count
        let ece = s.estimate(level: level) { r in
            let w = s.value(0, row: r)
            guard w > 0 else { return .nan }
            var t = 0.0
            for b in 0..<bins { t += abs(s.value(4 + b, row: r)) }
            return t / w
        }
        var reliability: [ReliabilityBin] = []
        var mce = 0.0
        for b in 0..<bins {
            let c = binCount[b]
            let conf = c > 0 ? binConfidence[b] / c : 0
            let acc = c > 0 ? binCorrect[b] / c : 0
            if c > 0 { mce = max(mce, abs(acc - conf)) }
            reliability.append(ReliabilityBin(lower: Double(b) / Double(bins), upper: Double(b + 1) / Double(bins),
                                              count: c, meanConfidence: conf, accuracy: acc))
        }
        let classwise = n > 0 ? classwiseDifference.reduce(0) { $0 + abs($1) } / (n * Double(classes)) : nil
        let (confs, correct) = sample.topLabel()
        let adaptive = confs.isEmpty ? nil
            : CalibrationMetrics.adaptiveCalibrationError(confidences: confs, correct: correct, bins: bins)
        let fit = TemperatureScaling.fit(logits: sample.logits, labels: sample.labels.map(Int.init),
                                         classes: classes, range: temperatureRange)
        return CalibrationSummary(
            samples: n, accuracy: s.ratio(1, 0, level: level), ece: ece, adaptiveECE: adaptive,
            classwiseECE: classwise, mce: n > 0 ? mce : nil, nll: s.ratio(2, 0, level: level),
            brier: s.ratio(3, 0, level: level), bins: reliability, fittedTemperature: fit,
            temperatureSamples: sample.count)
    }
}

/// Calibration figures of one model version over a window.
public struct CalibrationSummary: Sendable, Codable, Equatable {
    /// Labeled samples.
    public var samples: Double
    /// Top-1 accuracy.
    public var accuracy: BootstrapEstimate?
    /// 15-bin equal-width ECE (Guo et al. 2017) with interval.
    public var ece: BootstrapEstimate?
    /// Equal-mass ECE (Nixon et al. 2019) on the bottom-k sample.
    public var adaptiveECE: Double?
    /// Class-wise ECE (Kull et al. 2019).
    public var classwiseECE: Double?
    /// Maximum calibration error over non-empty bins.
    public var mce: Double?
    /// Mean NLL, nats.
    public var nll: BootstrapEstimate?
    /// Mean multi-class Brier score.
    public var brier: BootstrapEstimate?
    /// Reliability diagram.
    public var bins: [ReliabilityBin]
    /// Fitted temperature on the bottom-k sample.
    public var fittedTemperature: TemperatureFit?
    /// Samples the temperature fit and adaptive ECE used.
    public var temperatureSamples: Int

    /// Creates a summary.
    public init(samples: Double, accuracy: BootstrapEstimate?, ece: BootstrapEstimate?, adaptiveECE: Double?,
                classwiseECE: Double?, mce: Double?, nll: BootstrapEstimate?, brier: BootstrapEstimate?,
                bins: [ReliabilityBin], fittedTemperature: TemperatureFit?, temperatureSamples: Int) {
        self.samples = samples
        self.accuracy = accuracy
        self.ece = ece
        self.adaptiveECE = adaptiveECE
        self.classwiseECE = classwiseECE
        self.mce = mce
        self.nll = nll
        self.brier = brier
        self.bins = bins
        self.fittedTemperature = fittedTemperature
        self.temperatureSamples = temperatureSamples
    }
}

// MARK: - Bottom-k logit sample

/// A bottom-k sample: the `capacity` labeled logit vectors with the smallest id hashes, kept sorted by
/// hash. Deterministic for a replay and exactly mergeable (bottom-k of a union = bottom-k of the parts'
/// bottom-k's). Memory `capacity × (C + 3)` words.
public struct LogitSample: Sendable, Codable, Equatable {
    /// Number of classes C.
    public let classes: Int
    /// Maximum number of samples kept.
    public let capacity: Int
    /// Id hashes, ascending.
    public private(set) var hashes: [UInt64]
    /// Labels, parallel to `hashes`.
    public private(set) var labels: [Int32]
    /// Flat logits, `count × classes`, parallel to `hashes`.
    public private(set) var logits: [Float]

    /// An empty sample.
    public init(classes: Int, capacity: Int) {
        self.classes = classes
        self.capacity = capacity
        self.hashes = []
        self.labels = []
        self.logits = []
    }

    /// Number of samples kept.
    public var count: Int { hashes.count }

    enum CodingKeys: String, CodingKey { case classes, capacity, hashes, labels, logits }

    /// Decodes and checks that the parallel arrays agree, hashes ascend and labels are in range.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        classes = try c.decode(Int.self, forKey: .classes)
        capacity = try c.decode(Int.self, forKey: .capacity)
        hashes = try c.decodePacked(UInt64.self, forKey: .hashes)
        labels = try c.decodePacked(Int32.self, forKey: .labels)
        logits = try c.decodePacked(Float.self, forKey: .logits)
        guard classes >= 1, capacity >= 0, hashes.count <= capacity, labels.count == hashes.count,
              logits.count == hashes.count * classes, zip(hashes, hashes.dropFirst()).allSatisfy({ $0 <= $1 }),
              labels.allSatisfy({ $0 >= 0 && Int($0) < classes })
        else {
            throw DecodingError.dataCorruptedError(forKey: .hashes, in: c,
                                                   debugDescription: "LogitSample: inconsistent arrays")
        }
    }

    /// Encodes the arrays packed (`PackedNumbers`).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(classes, forKey: .classes)
        try c.encode(capacity, forKey: .capacity)
        try c.encodePacked(hashes, forKey: .hashes)
        try c.encodePacked(labels, forKey: .labels)
        try c.encodePacked(logits, forKey: .logits)
    }

    /// Offers a sample; it is kept if its hash is among the `capacity` smallest.
    public mutating func offer(hash: UInt64, logits row: UnsafeBufferPointer<Float>, label: Int) {
        guard capacity > 0 else { return }
        if hashes.count == capacity {
            guard let last = hashes.last, hash < last else { return }
            hashes.removeLast()
            labels.removeLast()
            logits.removeLast(classes)
        }
        var lo = 0, hi = hashes.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if hashes[mid] <= hash { lo = mid + 1 } else { hi = mid }
        }
        hashes.insert(hash, at: lo)
        labels.insert(Int32(label), at: lo)
        logits.insert(contentsOf: row, at: lo * classes)
    }

    /// Merges another sample: keeps the `capacity` smallest hashes of the union (stable order).
    public mutating func merge(_ other: LogitSample) {
        precondition(classes == other.classes, "LogitSample.merge: class count mismatch")
        var h: [UInt64] = [], l: [Int32] = [], z: [Float] = []
        let total = min(capacity, hashes.count + other.hashes.count)
        h.reserveCapacity(total); l.reserveCapacity(total); z.reserveCapacity(total * classes)
        var i = 0, j = 0
        while h.count < total {
            let takeSelf = j >= other.hashes.count || (i < hashes.count && hashes[i] <= other.hashes[j])
            if takeSelf {
                h.append(hashes[i]); l.append(labels[i])
                z.append(contentsOf: logits[i * classes ..< (i + 1) * classes]); i += 1
            } else {
                h.append(other.hashes[j]); l.append(other.labels[j])
                z.append(contentsOf: other.logits[j * classes ..< (j + 1) * classes]); j += 1
            }
        }
        hashes = h; labels = l; logits = z
    }

    /// Top-label confidences (T = 1) and correctness of the kept samples.
    public func topLabel() -> ([Double], [Bool]) {
        var conf: [Double] = [], ok: [Bool] = []
        conf.reserveCapacity(count); ok.reserveCapacity(count)
        logits.withUnsafeBufferPointer { z in
            for i in 0..<count {
                let row = UnsafeBufferPointer(rebasing: z[i * classes ..< (i + 1) * classes])
                let top = argmax(row)
                conf.append(exp(Double(row[top]) - logSumExp(row)))
                ok.append(top == Int(labels[i]))
            }
        }
        return (conf, ok)
    }
}
