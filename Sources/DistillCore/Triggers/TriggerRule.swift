// MARK: - Trigger configuration

/// Which figure a trigger rule watches. Shares are in [0, 1] (0.005 = 0.5 pp); KL in nats.
public enum TriggerMetric: String, Sendable, Codable, CaseIterable {
    /// New − old teacher accuracy on the same labeled samples.
    case teacherAccuracyDelta = "teacher_accuracy_delta"
    /// New − old teacher 15-bin ECE on the same labeled samples.
    case teacherECEDelta = "teacher_ece_delta"
    /// Mean KL(p_new ‖ p_old).
    case teacherKL = "teacher_kl"
    /// Student top-1 agreement with its paired teacher.
    case studentAgreement = "student_agreement"
    /// (acc_teacher − acc_student) − baseline gap.
    case qualityGapDrift = "quality_gap_drift"
    /// Baseline − current student accuracy, per rare class.
    case rareClassAccuracyDrop = "rare_class_accuracy_drop"
    /// Teacher regression: −(new − old accuracy) beyond `threshold`, or new − old ECE beyond
    /// `secondaryThreshold`.
    case teacherRegression = "teacher_regression"
    /// A teacher of a higher major version appeared (event-driven; fires at once).
    case teacherMajorVersion = "teacher_major_version"
}

/// How a figure is compared with the threshold.
public enum TriggerComparison: String, Sendable, Codable {
    /// Crosses when figure ≥ threshold.
    case atLeast = ">="
    /// Crosses when figure > threshold.
    case above = ">"
    /// Crosses when figure < threshold.
    case below = "<"
    /// Crosses when figure ≤ threshold.
    case atMost = "<="

    /// True if `x` is past `threshold` in this direction.
    public func crosses(_ x: Double, _ threshold: Double) -> Bool {
        switch self {
        case .atLeast: return x >= threshold
        case .above: return x > threshold
        case .below: return x < threshold
        case .atMost: return x <= threshold
        }
    }

    /// True for comparisons that fire on large values.
    public var firesHigh: Bool { self == .atLeast || self == .above }
}

/// Whether a rule needs its figure's interval past the threshold or only the point value.
public enum TriggerMode: String, Sendable, Codable {
    /// Fire only if the near end of the 95 % interval is past the threshold (default).
    case significant
    /// Fire if the point estimate is past the threshold.
    case point
}

/// What a fired rule asks for.
public enum TriggerAction: String, Sendable, Codable {
    /// Re-distill the student.
    case redistill
    /// Re-distill at once (non-negotiable, e.g. a teacher major version).
    case redistillNow = "redistill_now"
    /// Do not re-distill; alert the teacher owners.
    case skipAndAlertTeacherOwners = "skip_alert_teacher_owners"
}

/// One row of the trigger matrix.
public struct TriggerRule: Sendable, Codable, Equatable {
    /// Rule name used in decisions and alert ids (e.g. `teacher_kl_drift`).
    public var name: String
    /// The watched figure.
    public var metric: TriggerMetric
    /// Threshold in the figure's units.
    public var threshold: Double
    /// Direction of the comparison.
    public var comparison: TriggerComparison
    /// Second threshold where a metric has two parts (`teacherRegression`: ECE tolerance, ≥ comparison).
    public var secondaryThreshold: Double?
    /// Action when the rule fires.
    public var action: TriggerAction
    /// `significant` (default) or `point`.
    public var mode: TriggerMode
    /// Fewest samples (in the figure's sample set) for the rule to be evaluated.
    public var minSamples: Int
    /// An episode resolves when the point figure is back inside the threshold by this margin.
    public var hysteresis: Double
    /// After an episode fires, no new episode fires until this much event time has passed (ms).
    public var cooldownMillis: Int64
    /// Name of the window the rule evaluates on.
    public var window: String
    /// Disabled rules are not evaluated.
    public var enabled: Bool

    /// Creates a rule.
    public init(name: String, metric: TriggerMetric, threshold: Double, comparison: TriggerComparison,
                secondaryThreshold: Double? = nil, action: TriggerAction = .redistill, mode: TriggerMode = .significant,
                minSamples: Int = 1000, hysteresis: Double = 0, cooldownMillis: Int64 = WindowSpec.hour,
                window: String = "drift", enabled: Bool = true) {
        self.name = name
        self.metric = metric
        self.threshold = threshold
        self.comparison = comparison
        self.secondaryThreshold = secondaryThreshold
        self.action = action
        self.mode = mode
        self.minSamples = minSamples
        self.hysteresis = hysteresis
        self.cooldownMillis = cooldownMillis
        self.window = window
        self.enabled = enabled
    }

    /// Checks the rule; `windows` are the configured window names.
    public func validate(windows: Set<String>) throws(DistillConfigError) {
        let at = "triggers.\(name)"
        if name.isEmpty { throw DistillConfigError(setting: "triggers", message: "rule name must be non-empty") }
        if !threshold.isFinite { throw DistillConfigError(setting: at + ".threshold", message: "must be finite") }
        if minSamples < 1 { throw DistillConfigError(setting: at + ".min_samples", message: "must be >= 1") }
        if !(hysteresis >= 0) { throw DistillConfigError(setting: at + ".hysteresis", message: "must be >= 0") }
        if cooldownMillis < 0 { throw DistillConfigError(setting: at + ".cooldown", message: "must be >= 0") }
        if metric != .teacherMajorVersion && !windows.contains(window) {
            throw DistillConfigError(setting: at + ".window", message: "names no configured window '\(window)'")
        }
        if metric == .teacherRegression && secondaryThreshold == nil {
            throw DistillConfigError(setting: at + ".ece_tolerance", message: "is required for teacher_regression")
        }
    }
}

/// Baselines for `quality_gap_drift` and `rare_class_drift`: pinned in config or taken from a reference window.
public struct TriggerBaselines: Sendable, Codable, Equatable {
    /// Baseline quality gap acc_teacher − acc_student (default 0.016 = 1.6 pp).
    public var qualityGap: Double
    /// Baseline student accuracy per rare class index.
    public var rareClassAccuracy: [Int: Double]

    /// Creates baselines.
    public init(qualityGap: Double = 0.016, rareClassAccuracy: [Int: Double] = [:]) {
        self.qualityGap = qualityGap
        self.rareClassAccuracy = rareClassAccuracy
    }

    /// Baselines from a reference window's point figures (the interval of the reference is ignored).
    /// Classes without samples in the reference are left out; the quality gap falls back to `defaultGap`.
    public static func fromReference(_ figures: DistillFigures, rareClasses: [Int], defaultGap: Double = 0.016)
        -> TriggerBaselines {
        var rare: [Int: Double] = [:]
        for k in rareClasses where k >= 0 && k < figures.perClass.count {
            if let a = figures.perClass[k].studentAccuracy { rare[k] = a.value }
        }
        return TriggerBaselines(qualityGap: figures.qualityGap?.value ?? defaultGap, rareClassAccuracy: rare)
    }
}

/// The trigger matrix: rules, rare classes and baselines.
public struct TriggerMatrixConfig: Sendable, Codable, Equatable {
    /// The rules, evaluated in this order.
    public var rules: [TriggerRule]
    /// Class indices flagged as rare (for `rare_class_drift` and per-class reporting).
    public var rareClasses: [Int]
    /// Baselines.
    public var baselines: TriggerBaselines

    /// Creates a matrix.
    public init(rules: [TriggerRule] = TriggerMatrixConfig.defaultRules, rareClasses: [Int] = [],
                baselines: TriggerBaselines = TriggerBaselines()) {
        self.rules = rules
        self.rareClasses = rareClasses
        self.baselines = baselines
    }

    /// The default matrix of the issue. Windows: `drift` for all but `student_agreement` (`fast`).
    public static let defaultRules: [TriggerRule] = [
        TriggerRule(name: "teacher_accuracy_delta", metric: .teacherAccuracyDelta, threshold: 0.005,
                    comparison: .atLeast, hysteresis: 0.0025),
        TriggerRule(name: "teacher_ece_delta", metric: .teacherECEDelta, threshold: 0.01, comparison: .atLeast,
                    hysteresis: 0.005),
        TriggerRule(name: "teacher_kl_drift", metric: .teacherKL, threshold: 0.05, comparison: .atLeast,
                    hysteresis: 0.01),
        TriggerRule(name: "student_agreement", metric: .studentAgreement, threshold: 0.95, comparison: .below,
                    hysteresis: 0.005, window: "fast"),
        TriggerRule(name: "quality_gap_drift", metric: .qualityGapDrift, threshold: 0.005, comparison: .above,
                    hysteresis: 0.0025),
        TriggerRule(name: "teacher_major_version", metric: .teacherMajorVersion, threshold: 0, comparison: .above,
                    action: .redistillNow, mode: .point, minSamples: 1, cooldownMillis: 0),
        TriggerRule(name: "rare_class_drift", metric: .rareClassAccuracyDrop, threshold: 0.02, comparison: .atLeast,
                    minSamples: 200, hysteresis: 0.01),
        TriggerRule(name: "teacher_regressed", metric: .teacherRegression, threshold: 0.005, comparison: .atLeast,
                    secondaryThreshold: 0.03, action: .skipAndAlertTeacherOwners, hysteresis: 0.0025),
    ]

    /// Checks every rule against the configured window names.
    public func validate(windows: Set<String>, classes: Int) throws(DistillConfigError) {
        var names = Set<String>()
        for rule in rules {
            try rule.validate(windows: windows)
            if !names.insert(rule.name).inserted {
                throw DistillConfigError(setting: "triggers.\(rule.name)", message: "rule names must be unique")
            }
        }
        for k in rareClasses where k < 0 || k >= classes {
            throw DistillConfigError(setting: "model.rare_classes", message: "class \(k) is not in 0..<\(classes)")
        }
        for (k, v) in baselines.rareClassAccuracy where k < 0 || k >= classes || !(v >= 0 && v <= 1) {
            throw DistillConfigError(setting: "baselines.rare_class_accuracy",
                                     message: "class \(k): needs a class in range and an accuracy in [0, 1]")
        }
    }
}
