import DistillCore
import KafkaClient

// MARK: - distill.windows: every figure of a closed window, per group

/// One record on `distill.windows`: all figures of one closed window instance and one group, each with its
/// interval, for dashboards. One snapshot per (window instance, group) at each close (each slide).
public struct WindowSnapshot: Sendable, Codable, Equatable, DistillJSONOutput {
    /// Deterministic id: hex SHA-256 of the netstring-framed `window name, start, end, group key`.
    public var id: String
    /// `distilld/<instance>`.
    public var source: String
    /// RFC 3339 of the window end (event time, not wall clock).
    public var time: String
    /// The window instance.
    public var window: WindowSnapshotWindow
    /// The group.
    public var group: DistillOutputGroup
    /// Confidence level of every interval.
    public var level: Double
    /// Sizes of the figures' sample sets.
    public var samples: WindowSnapshotSampleCounts
    /// The figures with their intervals.
    public var figures: WindowSnapshotFigures
    /// Per-class student accuracy.
    public var perClass: [WindowSnapshotClassFigure]
    /// The combined trigger verdict of the group at this close (`none`, `redistill`, `redistill_now`,
    /// `skip_alert_teacher_owners`), nil when the snapshot was made without evaluating triggers.
    public var verdict: TriggerVerdict?
    /// Configuration revision.
    public var configRevision: String

    /// The default topic.
    public static let topic = "distill.windows"

    /// The snapshot of one group of a closed window; `figures` from `DistillPaneStats.figures(level:)`.
    public init(window: DistillWindow, group: DistillGroupKey, figures: DistillFigures,
                context: DistillOutputContext, rareClasses: [Int] = [], verdict: TriggerVerdict? = nil) {
        self.init(window: WindowSnapshotWindow(window), group: group, figures: figures, context: context,
                  rareClasses: rareClasses, verdict: verdict)
    }

    /// The snapshot of a trigger evaluator's report (`TriggerEvaluator.report(window:)`): its figures (rare
    /// classes already flagged) and verdict. `firstSequence` is the closed window's, for count windows.
    public init(report r: WindowReport, context: DistillOutputContext, firstSequence: Int? = nil) {
        self.init(window: WindowSnapshotWindow(name: r.window, start: r.start, end: r.end, samples: r.samples,
                                               lateSamples: r.lateSamples, firstSequence: firstSequence),
                  group: r.group, figures: r.figures, context: context, rareClasses: [], verdict: r.verdict)
    }

    /// The snapshot of one group's figures in the window instance `window`.
    public init(window: WindowSnapshotWindow, group: DistillGroupKey, figures f: DistillFigures,
                context: DistillOutputContext, rareClasses: [Int], verdict: TriggerVerdict?) {
        let rare = Set(rareClasses)
        let g = DistillOutputGroup(group)
        id = DistillOutputSHA256.hex(fields: [window.name, String(window.start), String(window.end), g.key])
        source = context.source
        time = DistillOutputTime.rfc3339(milliseconds: window.end)
        self.window = window
        self.group = g
        level = context.confidenceLevel
        samples = WindowSnapshotSampleCounts(kl: f.klSamples, agreement: f.agreementSamples,
                                             teacherLabeled: f.teacherLabeledSamples,
                                             studentLabeled: f.studentLabeledSamples)
        figures = WindowSnapshotFigures(f)
        perClass = f.perClass.map {
            WindowSnapshotClassFigure(classIndex: $0.classIndex, samples: $0.samples,
                                      studentAccuracy: DistillOutputEstimate($0.studentAccuracy),
                                      isRare: $0.isRare || rare.contains($0.classIndex))
        }
        self.verdict = verdict
        configRevision = context.configRevision
    }

    /// Snapshots of a batch of reports, in order.
    public static func snapshots(reports: [WindowReport], context: DistillOutputContext,
                                 firstSequence: Int? = nil) -> [WindowSnapshot] {
        reports.map { WindowSnapshot(report: $0, context: context, firstSequence: firstSequence) }
    }

    /// Snapshots of every group of a closed window, groups ordered by their key text (no verdict).
    public static func snapshots(of window: DistillWindow, context: DistillOutputContext,
                                 rareClasses: [Int] = []) -> [WindowSnapshot] {
        window.groups.keys.sorted { $0.description < $1.description }.map { key in
            WindowSnapshot(window: window, group: key,
                           figures: window.groups[key]!.figures(level: context.confidenceLevel), context: context,
                           rareClasses: rareClasses)
        }
    }

    enum CodingKeys: String, CodingKey {
        case id, source, time, window, group, level, samples, figures, perClass = "per_class", verdict,
             configRevision = "config_revision"
    }

    /// Encodes every key, `verdict` as `null` when triggers were not evaluated.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(source, forKey: .source)
        try c.encode(time, forKey: .time)
        try c.encode(window, forKey: .window)
        try c.encode(group, forKey: .group)
        try c.encode(level, forKey: .level)
        try c.encode(samples, forKey: .samples)
        try c.encode(figures, forKey: .figures)
        try c.encode(perClass, forKey: .perClass)
        try c.encodeOrNull(verdict, forKey: .verdict)
        try c.encode(configRevision, forKey: .configRevision)
    }

    /// The message key: `<window name>|<group key>`.
    public var key: String { window.name + "|" + group.key }

    /// The window end: the event time the record describes.
    public var eventTimeMillis: Int64 { window.end }
}

/// The closed window instance of a snapshot.
public struct WindowSnapshotWindow: Sendable, Codable, Equatable {
    /// Window name.
    public var name: String
    /// Start, event time ms (inclusive); for count windows the smallest event time seen.
    public var start: Int64
    /// End, event time ms (exclusive); for count windows the largest event time seen + 1.
    public var end: Int64
    /// `start` as RFC 3339.
    public var startTime: String
    /// `end` as RFC 3339.
    public var endTime: String
    /// Samples accepted into the window (before group fan-out).
    public var samples: Int
    /// Late samples rejected since the previous emitted instance.
    public var lateSamples: Int
    /// Count windows: sequence number of the first sample; nil for event-time windows.
    public var firstSequence: Int?

    /// The written form of a closed window's bounds and counts.
    public init(_ w: DistillWindow) {
        self.init(name: w.name, start: w.start, end: w.end, samples: w.samples, lateSamples: w.lateSamples,
                  firstSequence: w.firstSequence)
    }

    /// Creates a window description from its parts.
    public init(name: String, start: Int64, end: Int64, samples: Int, lateSamples: Int, firstSequence: Int?) {
        self.name = name
        self.start = start
        self.end = end
        startTime = DistillOutputTime.rfc3339(milliseconds: start)
        endTime = DistillOutputTime.rfc3339(milliseconds: end)
        self.samples = samples
        self.lateSamples = lateSamples
        self.firstSequence = firstSequence
    }

    enum CodingKeys: String, CodingKey {
        case name, start, end, startTime = "start_time", endTime = "end_time", samples, lateSamples = "late_samples",
             firstSequence = "first_sequence"
    }

    /// Encodes every key, `first_sequence` as `null` for event-time windows.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(start, forKey: .start)
        try c.encode(end, forKey: .end)
        try c.encode(startTime, forKey: .startTime)
        try c.encode(endTime, forKey: .endTime)
        try c.encode(samples, forKey: .samples)
        try c.encode(lateSamples, forKey: .lateSamples)
        try c.encodeOrNull(firstSequence, forKey: .firstSequence)
    }
}

/// Sample-set sizes of a snapshot's figures.
public struct WindowSnapshotSampleCounts: Sendable, Codable, Equatable {
    /// Samples with both teachers (KL).
    public var kl: Double?
    /// Samples with the student and its paired teacher (agreement).
    public var agreement: Double?
    /// Labeled samples with both teachers (teacher accuracy, ECE and their deltas).
    public var teacherLabeled: Double?
    /// Labeled samples with the student and its paired teacher (student accuracy, quality gap).
    public var studentLabeled: Double?

    /// Creates the counts (a non-finite count becomes nil).
    public init(kl: Double?, agreement: Double?, teacherLabeled: Double?, studentLabeled: Double?) {
        self.kl = DistillOutputJSON.finite(kl)
        self.agreement = DistillOutputJSON.finite(agreement)
        self.teacherLabeled = DistillOutputJSON.finite(teacherLabeled)
        self.studentLabeled = DistillOutputJSON.finite(studentLabeled)
    }

    enum CodingKeys: String, CodingKey {
        case kl, agreement, teacherLabeled = "teacher_labeled", studentLabeled = "student_labeled"
    }

    /// Encodes every key (non-finite as `null`).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeFinite(kl, forKey: .kl)
        try c.encodeFinite(agreement, forKey: .agreement)
        try c.encodeFinite(teacherLabeled, forKey: .teacherLabeled)
        try c.encodeFinite(studentLabeled, forKey: .studentLabeled)
    }
}

/// Every window figure with its interval; nil (`null`) when its sample set is empty. Shares in [0, 1],
/// KL in nats.
public struct WindowSnapshotFigures: Sendable, Codable, Equatable {
    /// Mean KL(p_new ‖ p_old), nats.
    public var teacherKL: DistillOutputEstimate?
    /// Student top-1 agreement with its paired teacher.
    public var studentAgreement: DistillOutputEstimate?
    /// New teacher accuracy.
    public var newTeacherAccuracy: DistillOutputEstimate?
    /// Old teacher accuracy (same samples).
    public var oldTeacherAccuracy: DistillOutputEstimate?
    /// New − old teacher accuracy.
    public var teacherAccuracyDelta: DistillOutputEstimate?
    /// New teacher 15-bin ECE.
    public var newTeacherECE: DistillOutputEstimate?
    /// Old teacher 15-bin ECE.
    public var oldTeacherECE: DistillOutputEstimate?
    /// New − old teacher ECE.
    public var teacherECEDelta: DistillOutputEstimate?
    /// Student accuracy.
    public var studentAccuracy: DistillOutputEstimate?
    /// Paired teacher accuracy on the student's labeled samples.
    public var pairedTeacherAccuracy: DistillOutputEstimate?
    /// Quality gap acc_paired_teacher − acc_student.
    public var qualityGap: DistillOutputEstimate?

    /// The written form of DistillCore's figures.
    public init(_ f: DistillFigures) {
        teacherKL = DistillOutputEstimate(f.teacherKL)
        studentAgreement = DistillOutputEstimate(f.studentAgreement)
        newTeacherAccuracy = DistillOutputEstimate(f.newTeacherAccuracy)
        oldTeacherAccuracy = DistillOutputEstimate(f.oldTeacherAccuracy)
        teacherAccuracyDelta = DistillOutputEstimate(f.teacherAccuracyDelta)
        newTeacherECE = DistillOutputEstimate(f.newTeacherECE)
        oldTeacherECE = DistillOutputEstimate(f.oldTeacherECE)
        teacherECEDelta = DistillOutputEstimate(f.teacherECEDelta)
        studentAccuracy = DistillOutputEstimate(f.studentAccuracy)
        pairedTeacherAccuracy = DistillOutputEstimate(f.pairedTeacherAccuracy)
        qualityGap = DistillOutputEstimate(f.qualityGap)
    }

    enum CodingKeys: String, CodingKey {
        case teacherKL = "teacher_kl", studentAgreement = "student_agreement",
             newTeacherAccuracy = "new_teacher_accuracy", oldTeacherAccuracy = "old_teacher_accuracy",
             teacherAccuracyDelta = "teacher_accuracy_delta", newTeacherECE = "new_teacher_ece",
             oldTeacherECE = "old_teacher_ece", teacherECEDelta = "teacher_ece_delta",
             studentAccuracy = "student_accuracy", pairedTeacherAccuracy = "paired_teacher_accuracy",
             qualityGap = "quality_gap"
    }

    /// Encodes every key, `null` for undefined figures.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeOrNull(teacherKL, forKey: .teacherKL)
        try c.encodeOrNull(studentAgreement, forKey: .studentAgreement)
        try c.encodeOrNull(newTeacherAccuracy, forKey: .newTeacherAccuracy)
        try c.encodeOrNull(oldTeacherAccuracy, forKey: .oldTeacherAccuracy)
        try c.encodeOrNull(teacherAccuracyDelta, forKey: .teacherAccuracyDelta)
        try c.encodeOrNull(newTeacherECE, forKey: .newTeacherECE)
        try c.encodeOrNull(oldTeacherECE, forKey: .oldTeacherECE)
        try c.encodeOrNull(teacherECEDelta, forKey: .teacherECEDelta)
        try c.encodeOrNull(studentAccuracy, forKey: .studentAccuracy)
        try c.encodeOrNull(pairedTeacherAccuracy, forKey: .pairedTeacherAccuracy)
        try c.encodeOrNull(qualityGap, forKey: .qualityGap)
    }
}

/// Per-class student accuracy in a snapshot.
public struct WindowSnapshotClassFigure: Sendable, Codable, Equatable {
    /// Class index.
    public var classIndex: Int
    /// Labeled samples of this true class; nil only if not finite.
    public var samples: Double?
    /// Student accuracy on the class (recall), nil without samples.
    public var studentAccuracy: DistillOutputEstimate?
    /// True if the class is configured as rare.
    public var isRare: Bool

    /// Creates a class figure.
    public init(classIndex: Int, samples: Double?, studentAccuracy: DistillOutputEstimate?, isRare: Bool) {
        self.classIndex = classIndex
        self.samples = DistillOutputJSON.finite(samples)
        self.studentAccuracy = studentAccuracy
        self.isRare = isRare
    }

    enum CodingKeys: String, CodingKey {
        case classIndex = "class_index", samples, studentAccuracy = "student_accuracy", isRare = "is_rare"
    }

    /// Encodes every key, `null` for an undefined accuracy.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(classIndex, forKey: .classIndex)
        try c.encodeFinite(samples, forKey: .samples)
        try c.encodeOrNull(studentAccuracy, forKey: .studentAccuracy)
        try c.encode(isRare, forKey: .isRare)
    }
}
