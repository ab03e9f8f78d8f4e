import DistillCore
import KafkaClient

// MARK: - distill.alerts: trigger episodes as CloudEvents 1.0

/// The CloudEvents `type` of an alert.
public enum AlertEventType: String, Sendable, Codable, CaseIterable {
    /// A trigger episode started (a `fire` decision whose action is not `skip_alert_teacher_owners`).
    case triggerFired = "distill.trigger.fired"
    /// A trigger episode ended (a `resolve` decision, whatever the rule's action).
    case triggerResolved = "distill.trigger.resolved"
    /// A teacher-regression episode started: a `fire` decision whose action is `skip_alert_teacher_owners`;
    /// do not re-distill, tell the teacher owners.
    case teacherRegressed = "distill.teacher.regressed"

    /// The type of a decision, nil for `skip` and `hold` (they are audit records, not alerts).
    public init?(decision: TriggerDecision) {
        switch decision.kind {
        case .fire: self = decision.action == .skipAndAlertTeacherOwners ? .teacherRegressed : .triggerFired
        case .resolve: self = .triggerResolved
        case .skip, .hold: return nil
        }
    }
}

/// One alert on `distill.alerts`: a CloudEvents 1.0 event in structured JSON mode.
///
/// Everything in it is a function of the decision and the context, never of the wall clock, so reprocessing
/// the same input yields byte-identical events: `time` is the event time of the evaluation that caused it
/// (the window end, or the teacher sample's event time for a major version), and `id` is
/// `AlertEvent.id(type:trigger:subject:episodeStart:window:)`.
public struct AlertEvent: Sendable, Codable, Equatable, DistillJSONOutput {
    /// CloudEvents spec version, always `1.0`.
    public var specversion: String
    /// `distill.trigger.fired`, `distill.trigger.resolved` or `distill.teacher.regressed`.
    public var type: AlertEventType
    /// `distilld/<instance or config name>`.
    public var source: String
    /// Deterministic id (64 hex characters); see `id(type:trigger:subject:episodeStart:window:)`.
    public var id: String
    /// RFC 3339 UTC time of the event time that caused the alert (not the wall clock).
    public var time: String
    /// The trigger (rule) name.
    public var subject: String
    /// Always `application/json`.
    public var datacontenttype: String
    /// The evidence.
    public var data: AlertEventData

    /// CloudEvents content type of a structured-mode Kafka record (the `content-type` header).
    public static let contentType = "application/cloudevents+json; charset=utf-8"
    /// The default topic.
    public static let topic = "distill.alerts"

    /// Creates an event from its parts (prefer `init?(decision:context:oldTeacher:newTeacher:)`).
    public init(type: AlertEventType, source: String, id: String, time: String, subject: String,
                data: AlertEventData) {
        self.specversion = "1.0"
        self.type = type
        self.source = source
        self.id = id
        self.time = time
        self.subject = subject
        self.datacontenttype = "application/json"
        self.data = data
    }

    /// The alert for a `fire` or `resolve` decision; nil for `skip` and `hold`.
    ///
    /// Teacher and student versions come from the decision's group. Decisions without a group take the new
    /// version from the subject: `teacher:<version>` (a major-version event) or, for `teacher_regression`
    /// decisions from the registry, the version itself. Pass `oldTeacher`/`newTeacher` to state them
    /// explicitly (they override the group's).
    public init?(decision d: TriggerDecision, context: DistillOutputContext, oldTeacher: String? = nil,
                 newTeacher: String? = nil) {
        guard let type = AlertEventType(decision: d) else { return nil }
        let episodeStart = d.episodeStart ?? d.windowEnd
        var newVersion = newTeacher ?? d.group?.newTeacher
        if newVersion == nil, d.group == nil {
            if d.subject.hasPrefix("teacher:") {
                newVersion = String(d.subject.dropFirst("teacher:".count))
            } else if d.metric == .teacherRegression {
                newVersion = d.subject
            }
        }
        let data = AlertEventData(
            trigger: d.rule, kind: d.kind.rawValue, action: d.action, metric: d.metric, subject: d.subject,
            group: d.group.map(DistillOutputGroup.init), classIndex: d.classIndex,
            value: DistillOutputJSON.finite(d.value),
            interval: AlertInterval(lower: d.lower, upper: d.upper, level: context.confidenceLevel),
            threshold: d.threshold, comparison: d.comparison.rawValue, mode: d.mode, baseline: d.baseline,
            minSamples: d.minSamples,
            window: AlertWindow(name: d.window, start: d.windowStart, end: d.windowEnd, samples: d.samples),
            oldTeacherVersion: oldTeacher ?? d.group?.oldTeacher, newTeacherVersion: newVersion,
            studentVersion: d.group?.student,
            episode: AlertEpisode(id: d.episodeID ?? "\(d.rule)|\(d.subject)|\(episodeStart)", start: episodeStart),
            configRevision: context.configRevision, reason: d.reason)
        self.init(type: type, source: context.source,
                  id: Self.id(type: type, trigger: d.rule, subject: d.subject, episodeStart: episodeStart,
                              window: d.window),
                  time: DistillOutputTime.rfc3339(milliseconds: d.windowEnd), subject: d.rule, data: data)
    }

    /// The id the alert of `decision` gets (nil for `skip` and `hold`): use it to remember what was published.
    public static func id(for decision: TriggerDecision) -> String? {
        guard let type = AlertEventType(decision: decision) else { return nil }
        return id(type: type, trigger: decision.rule, subject: decision.subject,
                  episodeStart: decision.episodeStart ?? decision.windowEnd, window: decision.window)
    }

    /// The alerts of a batch of decisions, in decision order (`skip` and `hold` left out).
    public static func events(from decisions: [TriggerDecision], context: DistillOutputContext) -> [AlertEvent] {
        decisions.compactMap { AlertEvent(decision: $0, context: context) }
    }

    /// The deterministic id: lower-case hex SHA-256 of the netstring-framed fields
    /// `type, trigger, subject, episodeStart (decimal ms), window name`.
    ///
    /// `subject` is the decision subject: the group text, plus `#class=k` for per-class rules. The event
    /// type is included so that an episode's `fired` and `resolved` events (same trigger, group, start and
    /// window) have distinct ids, as CloudEvents requires of distinct events from one source.
    public static func id(type: AlertEventType, trigger: String, subject: String, episodeStart: Int64,
                          window: String) -> String {
        DistillOutputSHA256.hex(fields: [type.rawValue, trigger, subject, String(episodeStart), window])
    }

    /// The message key: `<trigger>|<group text>` (the decision subject when there is no group), so every
    /// event of one trigger and group, fired then resolved, lands on one partition in order.
    public var key: String { data.trigger + "|" + (data.group?.key ?? data.subject) }

    /// The event time in ms since the epoch that caused the alert (the window end).
    public var eventTimeMillis: Int64 { data.window.end }

    /// The structured-mode JSON bytes (sorted keys, finite numbers).
    public func jsonBytes() throws -> [UInt8] { try DistillOutputJSON.encode(self) }
}

// MARK: - Alert data

/// The `data` of an alert: the decision's evidence, the versions involved and the config revision.
public struct AlertEventData: Sendable, Codable, Equatable {
    /// Trigger (rule) name.
    public var trigger: String
    /// Decision kind: `fire` or `resolve`.
    public var kind: String
    /// What the rule asks for.
    public var action: TriggerAction
    /// The watched figure.
    public var metric: TriggerMetric
    /// Decision subject: group text, plus `#class=k` for per-class rules, or `teacher:<version>`.
    public var subject: String
    /// The group evaluated, nil for event-driven rules.
    public var group: DistillOutputGroup?
    /// Class index for per-class rules.
    public var classIndex: Int?
    /// Observed value of the figure (after baseline adjustment); nil if undefined or not finite.
    public var value: Double?
    /// Its interval.
    public var interval: AlertInterval
    /// Threshold compared against; nil only if it was not finite.
    public var threshold: Double?
    /// Comparison text (`>=`, `>`, `<`, `<=`).
    public var comparison: String
    /// `significant` or `point`.
    public var mode: TriggerMode
    /// Baseline subtracted from the raw figure, if any.
    public var baseline: Double?
    /// The rule's minimum sample count.
    public var minSamples: Int
    /// The window evaluated.
    public var window: AlertWindow
    /// Old teacher version, if any.
    public var oldTeacherVersion: String?
    /// New teacher version, if known.
    public var newTeacherVersion: String?
    /// Student version of the group, nil when the group pools all students.
    public var studentVersion: String?
    /// The episode this event starts or ends.
    public var episode: AlertEpisode
    /// Configuration revision the decision was made under.
    public var configRevision: String
    /// Human-readable reason.
    public var reason: String

    /// Creates alert data.
    public init(trigger: String, kind: String, action: TriggerAction, metric: TriggerMetric, subject: String,
                group: DistillOutputGroup?, classIndex: Int?, value: Double?, interval: AlertInterval,
                threshold: Double?, comparison: String, mode: TriggerMode, baseline: Double?, minSamples: Int,
                window: AlertWindow, oldTeacherVersion: String?, newTeacherVersion: String?, studentVersion: String?,
                episode: AlertEpisode, configRevision: String, reason: String) {
        self.trigger = trigger
        self.kind = kind
        self.action = action
        self.metric = metric
        self.subject = subject
        self.group = group
        self.classIndex = classIndex
        self.value = DistillOutputJSON.finite(value)
        self.interval = interval
        self.threshold = DistillOutputJSON.finite(threshold)
        self.comparison = comparison
        self.mode = mode
        self.baseline = DistillOutputJSON.finite(baseline)
        self.minSamples = minSamples
        self.window = window
        self.oldTeacherVersion = oldTeacherVersion
        self.newTeacherVersion = newTeacherVersion
        self.studentVersion = studentVersion
        self.episode = episode
        self.configRevision = configRevision
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case trigger, kind, action, metric, subject, group, classIndex = "class_index", value, interval, threshold,
             comparison, mode, baseline, minSamples = "min_samples", window,
             oldTeacherVersion = "old_teacher_version", newTeacherVersion = "new_teacher_version",
             studentVersion = "student_version", episode, configRevision = "config_revision", reason
    }

    /// Encodes every key, `null` for absent or non-finite values.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(trigger, forKey: .trigger)
        try c.encode(kind, forKey: .kind)
        try c.encode(action, forKey: .action)
        try c.encode(metric, forKey: .metric)
        try c.encode(subject, forKey: .subject)
        try c.encodeOrNull(group, forKey: .group)
        try c.encodeOrNull(classIndex, forKey: .classIndex)
        try c.encodeFinite(value, forKey: .value)
        try c.encode(interval, forKey: .interval)
        try c.encodeFinite(threshold, forKey: .threshold)
        try c.encode(comparison, forKey: .comparison)
        try c.encode(mode, forKey: .mode)
        try c.encodeFinite(baseline, forKey: .baseline)
        try c.encode(minSamples, forKey: .minSamples)
        try c.encode(window, forKey: .window)
        try c.encodeOrNull(oldTeacherVersion, forKey: .oldTeacherVersion)
        try c.encodeOrNull(newTeacherVersion, forKey: .newTeacherVersion)
        try c.encodeOrNull(studentVersion, forKey: .studentVersion)
        try c.encode(episode, forKey: .episode)
        try c.encode(configRevision, forKey: .configRevision)
        try c.encode(reason, forKey: .reason)
    }
}

/// The interval of an alert's value: `{"lower", "upper", "level"}`.
public struct AlertInterval: Sendable, Codable, Equatable {
    /// Lower end, nil if undefined or not finite.
    public var lower: Double?
    /// Upper end, nil if undefined or not finite.
    public var upper: Double?
    /// Confidence level (0.95).
    public var level: Double

    /// Creates an interval; non-finite ends become nil.
    public init(lower: Double?, upper: Double?, level: Double) {
        self.lower = DistillOutputJSON.finite(lower)
        self.upper = DistillOutputJSON.finite(upper)
        self.level = level
    }

    /// Encodes every key, `null` for undefined ends.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeFinite(lower, forKey: .lower)
        try c.encodeFinite(upper, forKey: .upper)
        try c.encode(level, forKey: .level)
    }
}

/// The window an alert's decision was evaluated on.
public struct AlertWindow: Sendable, Codable, Equatable {
    /// Window name (`event` for event-driven rules).
    public var name: String
    /// Start, event time ms (inclusive).
    public var start: Int64
    /// End, event time ms (exclusive): the evaluation's event time.
    public var end: Int64
    /// `start` as RFC 3339.
    public var startTime: String
    /// `end` as RFC 3339.
    public var endTime: String
    /// Samples in the figure's sample set; nil only if not finite.
    public var samples: Double?

    /// Creates a window description.
    public init(name: String, start: Int64, end: Int64, samples: Double?) {
        self.name = name
        self.start = start
        self.end = end
        self.startTime = DistillOutputTime.rfc3339(milliseconds: start)
        self.endTime = DistillOutputTime.rfc3339(milliseconds: end)
        self.samples = DistillOutputJSON.finite(samples)
    }

    enum CodingKeys: String, CodingKey {
        case name, start, end, startTime = "start_time", endTime = "end_time", samples
    }

    /// Encodes every key (a non-finite sample count as `null`).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(start, forKey: .start)
        try c.encode(end, forKey: .end)
        try c.encode(startTime, forKey: .startTime)
        try c.encode(endTime, forKey: .endTime)
        try c.encodeFinite(samples, forKey: .samples)
    }
}

/// The episode an alert belongs to.
public struct AlertEpisode: Sendable, Codable, Equatable {
    /// DistillCore's episode id `rule|subject|start`.
    public var id: String
    /// Episode start, event time ms (the window end of the firing evaluation).
    public var start: Int64
    /// `start` as RFC 3339.
    public var startTime: String

    /// Creates an episode description.
    public init(id: String, start: Int64) {
        self.id = id
        self.start = start
        self.startTime = DistillOutputTime.rfc3339(milliseconds: start)
    }

    enum CodingKeys: String, CodingKey { case id, start, startTime = "start_time" }
}
