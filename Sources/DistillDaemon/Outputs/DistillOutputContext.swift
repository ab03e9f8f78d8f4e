import DistillCore

// MARK: - What every output record says about its producer

/// Producer facts stamped on every output record: who wrote it and under which configuration.
public struct DistillOutputContext: Sendable, Equatable {
    /// CloudEvents `source` of alerts, `distilld/<instance or config name>` (see `source(instance:)`).
    public var source: String
    /// The configuration revision the records were computed under (e.g. a config file hash or git revision).
    public var configRevision: String
    /// Confidence level of every interval in the records (default 0.95).
    public var confidenceLevel: Double

    /// Creates a context.
    public init(source: String, configRevision: String, confidenceLevel: Double = 0.95) {
        self.source = source
        self.configRevision = configRevision
        self.confidenceLevel = confidenceLevel
    }

    /// The conventional source text `distilld/<instance>`.
    public static func source(instance: String) -> String { "distilld/" + instance }
}

// MARK: - Estimates and groups as written

/// A figure with its interval as written to outputs: `{"value", "lower", "upper", "replicates"}`.
/// Non-finite interval ends are written as `null`; an estimate with a non-finite point is no estimate.
public struct DistillOutputEstimate: Sendable, Codable, Equatable {
    /// Point estimate.
    public var value: Double
    /// Lower end of the interval, nil if undefined.
    public var lower: Double?
    /// Upper end of the interval, nil if undefined.
    public var upper: Double?
    /// Bootstrap replicates that gave a defined figure (0 when the interval collapsed to the point).
    public var replicates: Int

    /// Creates an estimate; nil when `value` is not finite.
    public init?(value: Double, lower: Double?, upper: Double?, replicates: Int) {
        guard value.isFinite else { return nil }
        self.value = value
        self.lower = DistillOutputJSON.finite(lower)
        self.upper = DistillOutputJSON.finite(upper)
        self.replicates = replicates
    }

    /// The written form of a DistillCore estimate; nil when absent or its point is not finite.
    public init?(_ e: BootstrapEstimate?) {
        guard let e else { return nil }
        self.init(value: e.value, lower: e.lower, upper: e.upper, replicates: e.replicates)
    }

    enum CodingKeys: String, CodingKey { case value, lower, upper, replicates }

    /// Encodes every key, `null` for undefined or non-finite ends.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeFinite(value, forKey: .value)
        try c.encodeFinite(lower, forKey: .lower)
        try c.encodeFinite(upper, forKey: .upper)
        try c.encode(replicates, forKey: .replicates)
    }
}

/// A statistics group as written to outputs: the teacher pair, student and slice (`null` = pooled/none).
public struct DistillOutputGroup: Sendable, Codable, Equatable {
    /// The stable group text `new|old|student|paired|slice` (`*` for none), as in decision subjects.
    public var key: String
    /// New (candidate) teacher version.
    public var newTeacher: String
    /// Old teacher version, nil when the group has none.
    public var oldTeacher: String?
    /// Student version, nil when the group pools every student.
    public var student: String?
    /// The teacher the student is compared with (the new teacher unless set otherwise).
    public var pairedTeacher: String
    /// Slice, nil when the group pools every slice.
    public var slice: String?

    /// The written form of a group key.
    public init(_ g: DistillGroupKey) {
        key = g.description
        newTeacher = g.newTeacher
        oldTeacher = g.oldTeacher
        student = g.student
        pairedTeacher = g.effectivePairedTeacher
        slice = g.slice
    }

    enum CodingKeys: String, CodingKey {
        case key, newTeacher = "new_teacher", oldTeacher = "old_teacher", student, pairedTeacher = "paired_teacher",
             slice
    }

    /// Encodes every key, `null` for absent versions and slice.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(key, forKey: .key)
        try c.encode(newTeacher, forKey: .newTeacher)
        try c.encodeOrNull(oldTeacher, forKey: .oldTeacher)
        try c.encodeOrNull(student, forKey: .student)
        try c.encode(pairedTeacher, forKey: .pairedTeacher)
        try c.encodeOrNull(slice, forKey: .slice)
    }
}
