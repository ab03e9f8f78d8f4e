// MARK: - Decision records

/// The audit record of one rule evaluation, `skip` included, with its evidence.
public struct TriggerDecision: Sendable, Codable, Equatable {
    /// What the evaluation concluded.
    public enum Kind: String, Sendable, Codable {
        /// A new episode started: act on `action`.
        case fire
        /// The active episode ended (figure back inside threshold by the hysteresis margin).
        case resolve
        /// Nothing to do: not crossing, too few samples, or figure undefined.
        case skip
        /// An episode is active (no repeat), or a crossing is held back by the cooldown.
        case hold
    }

    /// Outcome.
    public var kind: Kind
    /// Rule name.
    public var rule: String
    /// Watched figure.
    public var metric: TriggerMetric
    /// The rule's action (meaningful for `fire`).
    public var action: TriggerAction
    /// Stable subject text: the group (`DistillGroupKey.description`), plus `#class=k` for per-class rules,
    /// or the teacher version for major-version events.
    public var subject: String
    /// The group evaluated, if any.
    public var group: DistillGroupKey?
    /// Class index for per-class rules.
    public var classIndex: Int?
    /// Window name.
    public var window: String
    /// Window start, event time ms (inclusive).
    public var windowStart: Int64
    /// Window end, event time ms (exclusive); the evaluation's event time.
    public var windowEnd: Int64
    /// Samples in the figure's sample set.
    public var samples: Double
    /// The rule's minimum.
    public var minSamples: Int
    /// Point value of the watched figure (after baseline adjustment), if defined.
    public var value: Double?
    /// Lower end of its interval.
    public var lower: Double?
    /// Upper end of its interval.
    public var upper: Double?
    /// Threshold compared against.
    public var threshold: Double
    /// Comparison used.
    public var comparison: TriggerComparison
    /// Mode used.
    public var mode: TriggerMode
    /// Baseline subtracted from the raw figure, if any.
    public var baseline: Double?
    /// Deterministic episode id `rule|subject|episodeStart` while an episode is involved.
    public var episodeID: String?
    /// Episode start, event time ms (the `windowEnd` of the firing evaluation).
    public var episodeStart: Int64?
    /// Human-readable reason.
    public var reason: String

    /// Creates a decision.
    public init(kind: Kind, rule: String, metric: TriggerMetric, action: TriggerAction, subject: String,
                group: DistillGroupKey?, classIndex: Int?, window: String, windowStart: Int64, windowEnd: Int64,
                samples: Double, minSamples: Int, value: Double?, lower: Double?, upper: Double?, threshold: Double,
                comparison: TriggerComparison, mode: TriggerMode, baseline: Double?, episodeID: String?,
                episodeStart: Int64?, reason: String) {
        self.kind = kind
        self.rule = rule
        self.metric = metric
        self.action = action
        self.subject = subject
        self.group = group
        self.classIndex = classIndex
        self.window = window
        self.windowStart = windowStart
        self.windowEnd = windowEnd
        self.samples = samples
        self.minSamples = minSamples
        self.value = value
        self.lower = lower
        self.upper = upper
        self.threshold = threshold
        self.comparison = comparison
        self.mode = mode
        self.baseline = baseline
        self.episodeID = episodeID
        self.episodeStart = episodeStart
        self.reason = reason
    }
}

/// The overall verdict of a batch of decisions for one group.
public enum TriggerVerdict: String, Sendable, Codable {
    /// No rule fired.
    case none
    /// At least one redistill rule fired and the teacher has not regressed.
    case redistill
    /// A teacher major version appeared.
    case redistillNow = "redistill_now"
    /// The new teacher regressed (fired or still active): skip re-distillation, alert teacher owners.
    case skipAndAlertTeacherOwners = "skip_alert_teacher_owners"

    /// Combines decisions: major version > teacher regressed (fired or held) > any redistill fire > none.
    public static func combine(_ decisions: [TriggerDecision]) -> TriggerVerdict {
        if decisions.contains(where: { $0.kind == .fire && $0.action == .redistillNow }) { return .redistillNow }
        if decisions.contains(where: {
            $0.action == .skipAndAlertTeacherOwners && ($0.kind == .fire || ($0.kind == .hold && $0.episodeID != nil))
        }) {
            return .skipAndAlertTeacherOwners
        }
        if decisions.contains(where: { $0.kind == .fire && $0.action == .redistill }) { return .redistill }
        return .none
    }
}

/// A teacher of a (possibly) higher major version appeared; the registry emits it.
public struct TeacherVersionEvent: Sendable, Codable, Equatable {
    /// The new teacher version.
    public var version: String
    /// Its major version.
    public var major: Int
    /// The highest major version active before it.
    public var previousMajor: Int
    /// Event time of the first sample carrying it, ms.
    public var eventTime: Int64

    /// Creates an event.
    public init(version: String, major: Int, previousMajor: Int, eventTime: Int64) {
        self.version = version
        self.major = major
        self.previousMajor = previousMajor
        self.eventTime = eventTime
    }
}
