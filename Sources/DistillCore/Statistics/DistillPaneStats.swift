import Foundation

// MARK: - Teacher/student sufficient statistics of one pane and group

/// Which parts of a sample to fold in: lets the daemon count a sample's label-free figures (KL, agreement)
/// on arrival and its labeled figures (accuracies, ECE, calibration) later, when its label joins, without
/// counting anything twice.
public struct SampleContribution: OptionSet, Sendable, Hashable, Codable {
    /// Raw bits.
    public let rawValue: UInt8
    /// Creates a set from raw bits.
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// KL drift and agreement (need no label).
    public static let unlabeled = SampleContribution(rawValue: 1)
    /// Accuracies, deltas, ECE, per-class accuracy and calibration (need the label).
    public static let labeled = SampleContribution(rawValue: 2)
    /// Everything.
    public static let all: SampleContribution = [.unlabeled, .labeled]
}

/// Mergeable sufficient statistics for one group (`DistillGroupKey`) over one pane (or a whole window).
///
/// Every figure keeps a point sum and B Poisson-bootstrap replicate sums (see `ReplicatedSums`), so the
/// merge of two panes equals accumulating their union, and intervals come out of the replicate rows.
/// Memory: `(10 + 2·bins + 2·C) × (B + 1)` Doubles, independent of traffic.
///
/// Sample sets (all restricted to the group's slice/student filters):
/// - KL: samples carrying both the new and the old teacher.
/// - Agreement: samples carrying the student and its paired teacher.
/// - Teacher accuracy / ECE (new, old, their deltas): labeled samples carrying both teachers (same samples).
/// - Student / paired-teacher accuracy, quality gap, per-class student accuracy: labeled samples carrying
///   both the student and its paired teacher.
public struct DistillPaneStats: Sendable, Codable, Equatable {
    /// Number of classes C.
    public let classes: Int
    /// Number of equal-width ECE bins.
    public let bins: Int
    /// Replicated sums; columns are described by `Column`.
    public private(set) var sums: ReplicatedSums

    /// Column offsets inside `sums`.
    public enum Column {
        /// Weight of samples with both teachers (KL denominator).
        public static let klWeight = 0
        /// Σ w · KL(p_new ‖ p_old), nats.
        public static let klSum = 1
        /// Weight of samples with student and paired teacher.
        public static let agreementWeight = 2
        /// Σ w · 1[argmax student = argmax paired teacher].
        public static let agreementHits = 3
        /// Weight of labeled samples with both teachers.
        public static let teacherLabeled = 4
        /// Σ w · 1[new teacher correct].
        public static let newCorrect = 5
        /// Σ w · 1[old teacher correct].
        public static let oldCorrect = 6
        /// Weight of labeled samples with student and paired teacher.
        public static let studentLabeled = 7
        /// Σ w · 1[student correct].
        public static let studentCorrect = 8
        /// Σ w · 1[paired teacher correct].
        public static let pairedCorrect = 9
        /// First of `bins` columns Σ w · (1[correct] − confidence) per confidence bin, new teacher.
        public static let newBins = 10
    }

    /// First of `bins` bin columns for the old teacher.
    public var oldBinsColumn: Int { Column.newBins + bins }
    /// Column of the per-class labeled weight for class `k` (student set).
    public func classCountColumn(_ k: Int) -> Int { Column.newBins + 2 * bins + k }
    /// Column of the per-class correct weight for class `k` (student set).
    public func classCorrectColumn(_ k: Int) -> Int { Column.newBins + 2 * bins + classes + k }

    /// Empty statistics for C = `classes` and B = `replicates`.
    public init(classes: Int, replicates: Int, bins: Int = CalibrationMetrics.defaultBins) {
        self.classes = classes
        self.bins = bins
        self.sums = ReplicatedSums(width: Column.newBins + 2 * bins + 2 * classes, replicates: replicates)
    }

    /// Number of bootstrap replicates B.
    public var replicates: Int { sums.replicates }

    enum CodingKeys: String, CodingKey { case classes, bins, sums }

    /// Decodes and checks that the sums' width matches `classes` and `bins`.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        classes = try c.decode(Int.self, forKey: .classes)
        bins = try c.decode(Int.self, forKey: .bins)
        sums = try c.decode(ReplicatedSums.self, forKey: .sums)
        guard classes >= 1, bins >= 1, sums.width == Column.newBins + 2 * bins + 2 * classes else {
            throw DecodingError.dataCorruptedError(forKey: .sums, in: c,
                                                   debugDescription: "DistillPaneStats: shape mismatch")
        }
    }

    // MARK: Accumulate

    /// Adds one sample to this group's statistics (the caller has checked `key.matches(sample)`).
    ///
    /// `weights` are the sample's bootstrap weights (`BootstrapWeights.reset(idHash:)` of its id);
    /// `contribution` selects the label-free and/or labeled parts (default both). When the same sample goes
    /// to several panes or groups, prefer `add(_:key:weights:contribution:derived:)` with one
    /// `DistillSampleDerived` per sample: the softmaxes and KL are then computed once, not once per pane.
    public mutating func add(_ sample: DistillSample, key: DistillGroupKey, weights: BootstrapWeights,
                             contribution: SampleContribution = .all) {
        var derived = DistillSampleDerived()
        add(sample, key: key, weights: weights, contribution: contribution, derived: &derived)
    }

    /// Adds one sample, reusing the per-sample figures cached in `derived` (the caller has checked
    /// `key.matches(sample)`).
    ///
    /// Create one `DistillSampleDerived()` per sample (it holds no heap storage) and pass it to every pane and
    /// group that sample is added to; never reuse it for another sample. The result is bit for bit that of
    /// `add(_:key:weights:contribution:)`.
    public mutating func add(_ sample: DistillSample, key: DistillGroupKey, weights: BootstrapWeights,
                             contribution: SampleContribution = .all, derived: inout DistillSampleDerived) {
        precondition(sample.classes == classes, "DistillPaneStats.add: class count mismatch")
        let newIndex = sample.teacherIndex(of: key.newTeacher) ?? -1
        let oldIndex = key.oldTeacher.flatMap { sample.teacherIndex(of: $0) } ?? -1
        let pairedIndex = sample.teacherIndex(of: key.effectivePairedTeacher) ?? -1
        let planKey = DistillSampleDerived.PlanKey(
            newIndex: Int32(truncatingIfNeeded: newIndex), oldIndex: Int32(truncatingIfNeeded: oldIndex),
            pairedIndex: Int32(truncatingIfNeeded: pairedIndex), contribution: contribution.rawValue,
            classes: Int32(truncatingIfNeeded: classes), bins: Int32(truncatingIfNeeded: bins))
        if derived.planKey != planKey {
            derived.plan = plan(sample, newIndex: newIndex, oldIndex: oldIndex, pairedIndex: pairedIndex,
                                contribution: contribution)
            derived.planKey = planKey
        }
        if !derived.plan.isEmpty { sums.apply(derived.plan, weights: weights) }
    }

    /// The column additions one sample makes to a group with these teacher indices (-1: absent).
    func plan(_ sample: DistillSample, newIndex n: Int, oldIndex o: Int, pairedIndex p: Int,
              contribution: SampleContribution) -> ReplicatedUpdate {
        var update = ReplicatedUpdate()
        let unlabeled = contribution.contains(.unlabeled)
        let label = contribution.contains(.labeled) ? sample.label : nil
        let hasStudent = sample.studentVersion != nil && !sample.studentLogits.isEmpty
        let c = classes
        sample.teacherLogits.withUnsafeBufferPointer { all in
            func teacher(_ t: Int) -> UnsafeBufferPointer<Float> {
                UnsafeBufferPointer(rebasing: all[t * c ..< (t + 1) * c])
            }
            if n >= 0 && o >= 0 {
                let pn = teacher(n), po = teacher(o)
                let newTop = Self.topAndSum(pn), oldTop = Self.topAndSum(po)
                if unlabeled {
                    let kl = Self.klDivergence(pn, po, lseP: newTop.logSumExp, lseQ: oldTop.logSumExp)
                    update.count(Column.klWeight)
                    update.add(Column.klSum, kl)
                }
                if let y = label {
                    let newConf = newTop.confidence, oldConf = oldTop.confidence
                    let newOK = newTop.index == y ? 1.0 : 0.0
                    let oldOK = oldTop.index == y ? 1.0 : 0.0
                    update.count(Column.teacherLabeled)
                    if newOK > 0 { update.count(Column.newCorrect) }
                    if oldOK > 0 { update.count(Column.oldCorrect) }
                    update.add(Column.newBins + CalibrationMetrics.binIndex(newConf, bins: bins), newOK - newConf)
                    update.add(oldBinsColumn + CalibrationMetrics.binIndex(oldConf, bins: bins), oldOK - oldConf)
                }
            }
            if p >= 0 && hasStudent {
                let studentTop = sample.studentLogits.withUnsafeBufferPointer { argmax($0) }
                let pairedTop = argmax(teacher(p))
                if unlabeled {
                    update.count(Column.agreementWeight)
                    if studentTop == pairedTop { update.count(Column.agreementHits) }
                }
                if let y = label {
                    update.count(Column.studentLabeled)
                    update.count(classCountColumn(y))
                    if studentTop == y {
                        update.count(Column.studentCorrect)
                        update.count(classCorrectColumn(y))
                    }
                    if pairedTop == y { update.count(Column.pairedCorrect) }
                }
            }
        }
        return update
    }

    /// Top-1 class of logits z, with s = Σ_j exp(z_j − z_top) (in Double, class order): the top-1 softmax
    /// probability (T = 1) is 1/s and log Σ exp z = z_top + log s, bit for bit `logSumExp(z)`.
    @inline(__always)
    static func topAndSum(_ z: UnsafeBufferPointer<Float>) -> (index: Int, confidence: Double, logSumExp: Double) {
        let top = argmax(z)
        let zt = Double(z[top])
        var s = 0.0
        for v in z { s += exp(Double(v) - zt) }
        return (top, 1 / s, zt + log(s))
    }

    /// KL(softmax(a) ‖ softmax(b)) in nats given both log-sum-exps: `klDivergence(logitsP:logitsQ:)` at T = 1,
    /// bit for bit, without recomputing the normalisers.
    @inline(__always)
    static func klDivergence(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>,
                             lseP: Double, lseQ: Double) -> Double {
        var kl = 0.0
        for i in 0..<a.count {
            let logP = Double(a[i]) - lseP
            let logQ = Double(b[i]) - lseQ
            let p = exp(logP)
            if p > 0 { kl += p * (logP - logQ) }
        }
        return max(kl, 0)
    }

    /// Top-1 class and its softmax probability (T = 1) for teacher `index`.
    static func topLabel(_ sample: DistillSample, teacher index: Int) -> (Int, Double) {
        sample.withTeacherLogits(at: index) { z in
            let t = topAndSum(z)
            return (t.index, t.confidence)
        }
    }

    /// Adds another pane's statistics (same shape).
    public mutating func merge(_ other: DistillPaneStats) {
        precondition(classes == other.classes && bins == other.bins, "DistillPaneStats.merge: shape mismatch")
        sums.merge(other.sums)
    }

    // MARK: Figures

    /// ECE of the bin columns starting at `first` for row `row`: Σ_b |Σ w(correct − conf)| / Σ w.
    func ece(binsFrom first: Int, row: Int) -> Double {
        let n = sums.value(Column.teacherLabeled, row: row)
        guard n > 0 else { return .nan }
        var total = 0.0
        for b in 0..<bins { total += abs(sums.value(first + b, row: row)) }
        return total / n
    }

    /// All figures of this window and group, each with a percentile-bootstrap interval at `level`.
    public func figures(level: Double = 0.95) -> DistillFigures {
        let s = sums
        func diffRatio(_ a: Int, _ b: Int, _ d: Int) -> BootstrapEstimate? {
            s.estimate(level: level) { r in
                let w = s.value(d, row: r)
                return w > 0 ? (s.value(a, row: r) - s.value(b, row: r)) / w : .nan
            }
        }
        var perClass: [ClassFigure] = []
        for k in 0..<classes {
            perClass.append(ClassFigure(
                classIndex: k, samples: s.value(classCountColumn(k)),
                studentAccuracy: s.ratio(classCorrectColumn(k), classCountColumn(k), level: level)))
        }
        let oldBins = oldBinsColumn
        return DistillFigures(
            klSamples: s.value(Column.klWeight),
            agreementSamples: s.value(Column.agreementWeight),
            teacherLabeledSamples: s.value(Column.teacherLabeled),
            studentLabeledSamples: s.value(Column.studentLabeled),
            teacherKL: s.ratio(Column.klSum, Column.klWeight, level: level),
            studentAgreement: s.ratio(Column.agreementHits, Column.agreementWeight, level: level),
            newTeacherAccuracy: s.ratio(Column.newCorrect, Column.teacherLabeled, level: level),
            oldTeacherAccuracy: s.ratio(Column.oldCorrect, Column.teacherLabeled, level: level),
            teacherAccuracyDelta: diffRatio(Column.newCorrect, Column.oldCorrect, Column.teacherLabeled),
            newTeacherECE: s.estimate(level: level) { ece(binsFrom: Column.newBins, row: $0) },
            oldTeacherECE: s.estimate(level: level) { ece(binsFrom: oldBins, row: $0) },
            teacherECEDelta: s.estimate(level: level) {
                ece(binsFrom: Column.newBins, row: $0) - ece(binsFrom: oldBins, row: $0)
            },
            studentAccuracy: s.ratio(Column.studentCorrect, Column.studentLabeled, level: level),
            pairedTeacherAccuracy: s.ratio(Column.pairedCorrect, Column.studentLabeled, level: level),
            qualityGap: diffRatio(Column.pairedCorrect, Column.studentCorrect, Column.studentLabeled),
            perClass: perClass)
    }
}

/// What one sample adds to a group's pane, computed once and shared by every pane and group the sample goes to.
///
/// `DistillWindowSet.ingest` fans one sample out to every window × matching group; all of them (for one teacher
/// pair) receive the same column additions. This cache keeps the last computed `ReplicatedUpdate` with the inputs
/// it depends on besides the sample (teacher indices, contribution, shape), so the softmaxes, the KL and the
/// top-1s are computed once per sample. Fixed-size, no heap storage: create one per sample on the stack.
public struct DistillSampleDerived: Sendable {
    struct PlanKey: Equatable, Sendable {
        var newIndex: Int32
        var oldIndex: Int32
        var pairedIndex: Int32
        var contribution: UInt8
        var classes: Int32
        var bins: Int32
    }

    var planKey: PlanKey?
    var plan = ReplicatedUpdate()

    /// An empty cache, for one sample.
    public init() {}
}

/// Per-class student accuracy (recall on the true class) with its interval.
public struct ClassFigure: Sendable, Codable, Equatable {
    /// Class index.
    public var classIndex: Int
    /// Labeled samples of this true class.
    public var samples: Double
    /// Student accuracy on this class, nil without samples.
    public var studentAccuracy: BootstrapEstimate?
    /// True if the class is configured as rare (see `DistillFigures.flaggingRareClasses(_:)`).
    public var isRare: Bool

    /// Creates a class figure.
    public init(classIndex: Int, samples: Double, studentAccuracy: BootstrapEstimate?, isRare: Bool = false) {
        self.classIndex = classIndex
        self.samples = samples
        self.studentAccuracy = studentAccuracy
        self.isRare = isRare
    }
}

/// The figures of one window and group. Accuracies are shares in [0, 1] (0.005 = 0.5 pp); KL in nats.
/// A figure is nil when its sample set is empty.
public struct DistillFigures: Sendable, Codable, Equatable {
    /// Samples with both teachers.
    public var klSamples: Double
    /// Samples with the student and its paired teacher.
    public var agreementSamples: Double
    /// Labeled samples with both teachers.
    public var teacherLabeledSamples: Double
    /// Labeled samples with the student and its paired teacher.
    public var studentLabeledSamples: Double
    /// Mean KL(p_new ‖ p_old), nats.
    public var teacherKL: BootstrapEstimate?
    /// Share of samples with argmax(student) = argmax(paired teacher).
    public var studentAgreement: BootstrapEstimate?
    /// Accuracy of the new teacher.
    public var newTeacherAccuracy: BootstrapEstimate?
    /// Accuracy of the old teacher (same samples).
    public var oldTeacherAccuracy: BootstrapEstimate?
    /// New − old teacher accuracy.
    public var teacherAccuracyDelta: BootstrapEstimate?
    /// 15-bin ECE of the new teacher.
    public var newTeacherECE: BootstrapEstimate?
    /// 15-bin ECE of the old teacher (same samples).
    public var oldTeacherECE: BootstrapEstimate?
    /// New − old teacher ECE.
    public var teacherECEDelta: BootstrapEstimate?
    /// Student accuracy.
    public var studentAccuracy: BootstrapEstimate?
    /// Paired teacher accuracy on the student's labeled samples.
    public var pairedTeacherAccuracy: BootstrapEstimate?
    /// Quality gap acc_teacher − acc_student (paired teacher).
    public var qualityGap: BootstrapEstimate?
    /// Per-class student accuracy.
    public var perClass: [ClassFigure]

    /// Creates a figure set.
    public init(klSamples: Double, agreementSamples: Double, teacherLabeledSamples: Double,
                studentLabeledSamples: Double, teacherKL: BootstrapEstimate?, studentAgreement: BootstrapEstimate?,
                newTeacherAccuracy: BootstrapEstimate?, oldTeacherAccuracy: BootstrapEstimate?,
                teacherAccuracyDelta: BootstrapEstimate?, newTeacherECE: BootstrapEstimate?,
                oldTeacherECE: BootstrapEstimate?, teacherECEDelta: BootstrapEstimate?,
                studentAccuracy: BootstrapEstimate?, pairedTeacherAccuracy: BootstrapEstimate?,
                qualityGap: BootstrapEstimate?, perClass: [ClassFigure]) {
        self.klSamples = klSamples
        self.agreementSamples = agreementSamples
        self.teacherLabeledSamples = teacherLabeledSamples
        self.studentLabeledSamples = studentLabeledSamples
        self.teacherKL = teacherKL
        self.studentAgreement = studentAgreement
        self.newTeacherAccuracy = newTeacherAccuracy
        self.oldTeacherAccuracy = oldTeacherAccuracy
        self.teacherAccuracyDelta = teacherAccuracyDelta
        self.newTeacherECE = newTeacherECE
        self.oldTeacherECE = oldTeacherECE
        self.teacherECEDelta = teacherECEDelta
        self.studentAccuracy = studentAccuracy
        self.pairedTeacherAccuracy = pairedTeacherAccuracy
        self.qualityGap = qualityGap
        self.perClass = perClass
    }

    /// A copy with `isRare` set on the per-class figures of `rareClasses`.
    public func flaggingRareClasses(_ rareClasses: [Int]) -> DistillFigures {
        var copy = self
        for k in rareClasses where k >= 0 && k < copy.perClass.count { copy.perClass[k].isRare = true }
        return copy
    }
}
