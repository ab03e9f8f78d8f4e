// MARK: - Teacher health

/// Tolerances of the teacher health check. A teacher is *regressed* (not distilled from; `teacher_regressed`
/// alerts its owners) when any check fails:
///
/// - recorded: accuracy ≥ ``minimumAccuracy`` and ECE ≤ ``maximumECE``;
/// - recorded vs the previous healthy active teacher: accuracy drop ≤ ``maximumAccuracyDrop`` and ECE rise
///   ≤ ``maximumECEIncrease``;
/// - observed (from the stream's labeled samples, supplied by the caller) vs recorded: the observed accuracy
///   (its interval's upper bound when given) ≥ recorded − ``maximumObservedAccuracyGap``, and the observed ECE
///   (its interval's lower bound when given) ≤ recorded + ``maximumObservedECEGap``. Using the favourable bound
///   means only a confidently worse teacher is called regressed.
public struct TeacherHealthPolicy: Sendable, Equatable {
    /// Floor on recorded accuracy. Default 0 (off).
    public var minimumAccuracy: Double
    /// Ceiling on recorded ECE. Default 1 (off).
    public var maximumECE: Double
    /// Largest allowed recorded accuracy drop versus the previous healthy active teacher. Default 0.005 (0.5 pp).
    public var maximumAccuracyDrop: Double
    /// Largest allowed recorded ECE increase versus the previous healthy active teacher. Default 0.01.
    public var maximumECEIncrease: Double
    /// Largest allowed shortfall of observed accuracy below recorded. Default 0.02.
    public var maximumObservedAccuracyGap: Double
    /// Largest allowed excess of observed ECE above recorded. Default 0.02.
    public var maximumObservedECEGap: Double
    /// When true, a teacher is distilled from only after an observation passed. Default false.
    public var requireObservation: Bool

    /// Creates a policy (all arguments defaulted as documented on the properties).
    public init(
        minimumAccuracy: Double = 0, maximumECE: Double = 1, maximumAccuracyDrop: Double = 0.005,
        maximumECEIncrease: Double = 0.01, maximumObservedAccuracyGap: Double = 0.02,
        maximumObservedECEGap: Double = 0.02, requireObservation: Bool = false
    ) {
        self.minimumAccuracy = minimumAccuracy
        self.maximumECE = maximumECE
        self.maximumAccuracyDrop = maximumAccuracyDrop
        self.maximumECEIncrease = maximumECEIncrease
        self.maximumObservedAccuracyGap = maximumObservedAccuracyGap
        self.maximumObservedECEGap = maximumObservedECEGap
        self.requireObservation = requireObservation
    }

    /// Checks that every tolerance is finite and in [0, 1].
    public func validate() throws {
        let fields: [(String, Double)] = [
            ("teacher_health.min_accuracy", minimumAccuracy), ("teacher_health.max_ece", maximumECE),
            ("teacher_health.max_accuracy_drop", maximumAccuracyDrop),
            ("teacher_health.max_ece_increase", maximumECEIncrease),
            ("teacher_health.max_observed_accuracy_gap", maximumObservedAccuracyGap),
            ("teacher_health.max_observed_ece_gap", maximumObservedECEGap),
        ]
        for (f, v) in fields where !(v.isFinite && (0...1).contains(v)) {
            throw TeacherRegistryError(.invalidConfiguration, field: f, reason: "must be in [0, 1] (got \(v))")
        }
    }

    /// The recorded-figures check of `record` against `baseline` (the previous healthy active teacher, if any).
    /// Returns nil when healthy, else the reason.
    public func recordedRegression(_ record: TeacherRecord, baseline: TeacherRecord?) -> String? {
        if record.accuracy < minimumAccuracy {
            return "recorded accuracy \(record.accuracy) < minimum \(minimumAccuracy)"
        }
        if record.ece > maximumECE { return "recorded ECE \(record.ece) > maximum \(maximumECE)" }
        if let b = baseline {
            if b.accuracy - record.accuracy > maximumAccuracyDrop + 1e-12 {
                return "recorded accuracy \(record.accuracy) dropped more than \(maximumAccuracyDrop) below "
                    + "\(b.version) (\(b.accuracy))"
            }
            if record.ece - b.ece > maximumECEIncrease + 1e-12 {
                return "recorded ECE \(record.ece) rose more than \(maximumECEIncrease) above \(b.version) (\(b.ece))"
            }
        }
        return nil
    }

    /// The observed-figures check. Returns nil when healthy (or nothing observed), else the reason.
    public func observedRegression(_ record: TeacherRecord, observed: ObservedTeacherMetrics) -> String? {
        if let a = observed.accuracyUpper ?? observed.accuracy, a.isFinite,
            record.accuracy - a > maximumObservedAccuracyGap + 1e-12
        {
            return "observed accuracy \(observed.accuracy ?? a) is more than \(maximumObservedAccuracyGap) below "
                + "recorded \(record.accuracy) (n = \(observed.sampleCount))"
        }
        if let e = observed.eceLower ?? observed.ece, e.isFinite, e - record.ece > maximumObservedECEGap + 1e-12 {
            return "observed ECE \(observed.ece ?? e) is more than \(maximumObservedECEGap) above recorded "
                + "\(record.ece) (n = \(observed.sampleCount))"
        }
        return nil
    }
}

/// A teacher's accuracy and ECE as observed on the stream's labeled samples (computed by the caller's windows).
public struct ObservedTeacherMetrics: Sendable, Equatable {
    /// Observed accuracy point estimate.
    public var accuracy: Double?
    /// Upper bound of the accuracy interval, if computed.
    public var accuracyUpper: Double?
    /// Observed ECE point estimate.
    public var ece: Double?
    /// Lower bound of the ECE interval, if computed.
    public var eceLower: Double?
    /// Labeled samples behind the figures.
    public var sampleCount: Int

    /// Creates observed metrics.
    public init(
        accuracy: Double?, accuracyUpper: Double? = nil, ece: Double?, eceLower: Double? = nil, sampleCount: Int
    ) {
        self.accuracy = accuracy
        self.accuracyUpper = accuracyUpper
        self.ece = ece
        self.eceLower = eceLower
        self.sampleCount = sampleCount
    }
}

/// The health of one teacher version.
public enum TeacherHealth: Sendable, Equatable {
    /// Recorded figures passed; no observation yet.
    case recordedOK
    /// Recorded and observed figures passed.
    case healthy
    /// A check failed; the teacher is not distilled from.
    case regressed(reason: String)

    /// Whether the teacher is regressed.
    public var isRegressed: Bool {
        if case .regressed = self { return true }
        return false
    }
}
