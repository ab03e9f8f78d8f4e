// MARK: - Group keys

/// The group a sample's statistics are kept under: a teacher pair, a student version and a slice.
///
/// The teacher registry (another module) decides the pair; this module takes it as given. A nil
/// `student` or `slice` means "any": the group pools every student version or every slice.
public struct DistillGroupKey: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The new (candidate, usually latest) teacher version.
    public var newTeacher: String
    /// The old (previous active) teacher version; nil disables KL drift and the new − old deltas.
    public var oldTeacher: String?
    /// The served student version this group tracks; nil pools all student versions.
    public var student: String?
    /// The teacher the student was distilled from (agreement and quality gap are measured against it);
    /// nil means `newTeacher`.
    public var pairedTeacher: String?
    /// The traffic slice; nil pools all slices.
    public var slice: String?

    /// Creates a group key.
    public init(newTeacher: String, oldTeacher: String? = nil, student: String? = nil, pairedTeacher: String? = nil,
                slice: String? = nil) {
        self.newTeacher = newTeacher
        self.oldTeacher = oldTeacher
        self.student = student
        self.pairedTeacher = pairedTeacher
        self.slice = slice
    }

    /// The teacher agreement and quality gap use.
    public var effectivePairedTeacher: String { pairedTeacher ?? newTeacher }

    /// True if the sample belongs to this group's slice and student filters.
    public func matches(_ sample: DistillSample) -> Bool {
        if let slice, sample.slice != slice { return false }
        if let student, sample.studentVersion != student { return false }
        return true
    }

    /// The standard fan-out of one teacher pair: pooled, per student version, per slice, and per student
    /// and slice, for the sample's own student version and slice (nil entries omitted, duplicates removed).
    public static func standardGroups(newTeacher: String, oldTeacher: String?, pairedTeacher: String?,
                                      student: String?, slice: String?) -> [DistillGroupKey] {
        let students: [String?] = student == nil ? [nil] : [nil, student]
        let slices: [String?] = slice == nil ? [nil] : [nil, slice]
        var out: [DistillGroupKey] = []
        for s in students {
            for sl in slices {
                out.append(DistillGroupKey(newTeacher: newTeacher, oldTeacher: oldTeacher, student: s,
                                           pairedTeacher: pairedTeacher, slice: sl))
            }
        }
        return out
    }

    /// A stable text form, `new|old|student|paired|slice` with `*` for nil; used in decision ids.
    public var description: String {
        [newTeacher, oldTeacher ?? "*", student ?? "*", effectivePairedTeacher, slice ?? "*"].joined(separator: "|")
    }
}
