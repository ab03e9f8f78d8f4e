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
    /// Prunes the bottom-k sample (see `LogitSample.prune(above:)`); every other figure is untouched.
    public mutating func pruneSample(above bound: UInt64) { sample.prune(above: bound) }

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
        // Folded once: the confidences and the temperature fit read the same kept samples.
        let kept = sample.folded()
        let (confs, correct) = LogitSample.topLabel(labels: kept.labels, logits: kept.logits, classes: classes)
        let adaptive = confs.isEmpty ? nil
            : CalibrationMetrics.adaptiveCalibrationError(confidences: confs, correct: correct, bins: bins)
        let fit = TemperatureScaling.fit(logits: kept.logits, labels: kept.labels.map(Int.init),
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
///
/// Equal hashes keep their arrival order, so the kept set is the `capacity` smallest by (hash, arrival). Offers
/// are collected unsorted, up to `pendingLimit`, and folded in by one stable sort and merge: inserting each into the
/// sorted arrays moved half of them (up to 64 KB of logits at C = 16) per offer, which was a tenth of the daemon's
/// time while the panes' samples were filling. Every read sees the folded result, the same arrays as before.
public struct LogitSample: Sendable, Codable {
    /// Number of classes C.
    public let classes: Int
    /// Maximum number of samples kept.
    public let capacity: Int
    /// Folded samples, ascending by (hash, arrival).
    private var keptHashes: [UInt64]
    private var keptLabels: [Int32]
    private var keptLogits: [Float]
    /// Offers not folded in yet, in arrival order; each passed the kept set's bound when it arrived.
    private var pendingHashes: [UInt64] = []
    private var pendingLabels: [Int32] = []
    private var pendingLogits: [Float] = []
    /// Offers with a larger hash are refused: the union this sample will be merged into already holds `capacity`
    /// samples with hashes at most this (see `prune(above:)`). Not encoded: a restored sample takes offers again
    /// until it is next pruned.
    private var bound: UInt64 = .max

    /// Offers collected before they are folded in.
    static let pendingLimit = 128

    /// An empty sample.
    public init(classes: Int, capacity: Int) {
        self.classes = classes
        self.capacity = capacity
        self.keptHashes = []
        self.keptLabels = []
        self.keptLogits = []
    }

    /// Id hashes, ascending.
    public var hashes: [UInt64] { pendingHashes.isEmpty ? keptHashes : folded().hashes }
    /// Labels, parallel to `hashes`.
    public var labels: [Int32] { pendingHashes.isEmpty ? keptLabels : folded().labels }
    /// Flat logits, `count × classes`, parallel to `hashes`.
    public var logits: [Float] { pendingHashes.isEmpty ? keptLogits : folded().logits }

    /// Number of samples kept.
    public var count: Int { min(capacity, keptHashes.count + pendingHashes.count) }

    enum CodingKeys: String, CodingKey { case classes, capacity, hashes, labels, logits }

    /// Decodes and checks that the parallel arrays agree, hashes ascend and labels are in range.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        classes = try c.decode(Int.self, forKey: .classes)
        capacity = try c.decode(Int.self, forKey: .capacity)
        keptHashes = try c.decodePacked(UInt64.self, forKey: .hashes)
        keptLabels = try c.decodePacked(Int32.self, forKey: .labels)
        keptLogits = try c.decodePacked(Float.self, forKey: .logits)
        guard classes >= 1, capacity >= 0, keptHashes.count <= capacity, keptLabels.count == keptHashes.count,
              keptLogits.count == keptHashes.count * classes,
              zip(keptHashes, keptHashes.dropFirst()).allSatisfy({ $0 <= $1 }),
              keptLabels.allSatisfy({ $0 >= 0 && Int($0) < classes })
        else {
            throw DecodingError.dataCorruptedError(forKey: .hashes, in: c,
                                                   debugDescription: "LogitSample: inconsistent arrays")
        }
    }

    /// Encodes the arrays packed (`PackedNumbers`), folded.
    public func encode(to encoder: any Encoder) throws {
        let (h, l, z) = folded()
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(classes, forKey: .classes)
        try c.encode(capacity, forKey: .capacity)
        try c.encodePacked(h, forKey: .hashes)
        try c.encodePacked(l, forKey: .labels)
        try c.encodePacked(z, forKey: .logits)
    }

    /// Offers a sample; it is kept if its hash is among the `capacity` smallest.
    public mutating func offer(hash: UInt64, logits row: UnsafeBufferPointer<Float>, label: Int) {
        guard capacity > 0, hash <= bound else { return }
        // Full: only a hash below the largest kept one can enter (an equal one arrived later, so it ranks after).
        if keptHashes.count == capacity, let last = keptHashes.last, hash >= last { return }
        pendingHashes.append(hash)
        pendingLabels.append(Int32(label))
        pendingLogits.append(contentsOf: row)
        if pendingHashes.count >= Self.pendingLimit { fold() }
    }

    /// Drops the samples whose hash is above `bound` and refuses such offers from now on.
    ///
    /// Only for a part of a union (one partition's share of a pane) when the union is known to hold at least
    /// `capacity` samples with hashes at most `bound`: none of the dropped can then be among the union's `capacity`
    /// smallest, and equal hashes are all kept, so merging the parts gives exactly what it gave without pruning.
    /// With P partitions, each part then holds about `capacity / P` samples instead of `capacity`.
    public mutating func prune(above bound: UInt64) {
        self.bound = min(self.bound, bound)
        fold()
        let keep = keptHashes.firstIndex { $0 > self.bound } ?? keptHashes.count
        guard keep < keptHashes.count else { return }
        // New arrays, so the memory goes (removing a tail keeps the capacity).
        keptHashes = Array(keptHashes[..<keep])
        keptLabels = Array(keptLabels[..<keep])
        keptLogits = Array(keptLogits[..<(keep * classes)])
    }

    /// Folds the pending offers into the kept arrays.
    private mutating func fold() {
        guard !pendingHashes.isEmpty else { return }
        (keptHashes, keptLabels, keptLogits) = folded()
        pendingHashes.removeAll(keepingCapacity: true)
        pendingLabels.removeAll(keepingCapacity: true)
        pendingLogits.removeAll(keepingCapacity: true)
    }

    /// The kept and pending samples merged: the `capacity` smallest by (hash, arrival), ascending.
    func folded() -> (hashes: [UInt64], labels: [Int32], logits: [Float]) {
        if pendingHashes.isEmpty { return (keptHashes, keptLabels, keptLogits) }
        // Stable: equal hashes stay in arrival order.
        let order = pendingHashes.indices.sorted { (pendingHashes[$0], $0) < (pendingHashes[$1], $1) }
        var logits: [Float] = []
        logits.reserveCapacity(pendingLogits.count)
        for k in order { logits += pendingLogits[k * classes ..< (k + 1) * classes] }
        return bottomK((keptHashes, keptLabels, keptLogits),
                       (order.map { pendingHashes[$0] }, order.map { pendingLabels[$0] }, logits))
    }

    /// The `capacity` smallest of two ascending runs, ascending; on equal hashes `a`'s come first (they arrived
    /// earlier, or belong to the sample merged into).
    private func bottomK(_ a: (hashes: [UInt64], labels: [Int32], logits: [Float]),
                         _ b: (hashes: [UInt64], labels: [Int32], logits: [Float]))
        -> (hashes: [UInt64], labels: [Int32], logits: [Float]) {
        let total = min(capacity, a.hashes.count + b.hashes.count)
        var h: [UInt64] = [], l: [Int32] = [], z: [Float] = []
        h.reserveCapacity(total); l.reserveCapacity(total); z.reserveCapacity(total * classes)
        var i = 0, j = 0
        while h.count < total {
            if j >= b.hashes.count || (i < a.hashes.count && a.hashes[i] <= b.hashes[j]) {
                h.append(a.hashes[i]); l.append(a.labels[i])
                z.append(contentsOf: a.logits[i * classes ..< (i + 1) * classes]); i += 1
            } else {
                h.append(b.hashes[j]); l.append(b.labels[j])
                z.append(contentsOf: b.logits[j * classes ..< (j + 1) * classes]); j += 1
            }
        }
        return (h, l, z)
    }

    /// Merges another sample: keeps the `capacity` smallest hashes of the union (stable order).
    public mutating func merge(_ other: LogitSample) {
        precondition(classes == other.classes, "LogitSample.merge: class count mismatch")
        fold()
        (keptHashes, keptLabels, keptLogits) = bottomK((keptHashes, keptLabels, keptLogits), other.folded())
    }

    /// Top-label confidences (T = 1) and correctness of the kept samples.
    public func topLabel() -> ([Double], [Bool]) {
        let (_, labels, logits) = folded()
        return Self.topLabel(labels: labels, logits: logits, classes: classes)
    }

    /// `topLabel()` of folded arrays.
    static func topLabel(labels: [Int32], logits: [Float], classes: Int) -> ([Double], [Bool]) {
        var conf: [Double] = [], ok: [Bool] = []
        let count = labels.count
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

extension LogitSample: Equatable {
    /// Equal when the kept samples are, however many offers are still to be folded in.
    public static func == (a: LogitSample, b: LogitSample) -> Bool {
        guard a.classes == b.classes, a.capacity == b.capacity else { return false }
        let x = a.folded(), y = b.folded()
        return x.hashes == y.hashes && x.labels == y.labels && x.logits == y.logits
    }
}
