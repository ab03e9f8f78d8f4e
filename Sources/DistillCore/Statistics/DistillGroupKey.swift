// MARK: - Group keys

/// The group a sample's statistics are kept under: a teacher pair, a student version and a slice.
///
/// The teacher registry (another module) decides the pair; this module takes it as given. A nil
/// `student` or `slice` means "any": the group pools every student version or every slice.
public struct DistillGroupKey: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The new (candidate, usually latest) teacher version.
    public let newTeacher: String
    /// The old (previous active) teacher version; nil disables KL drift and the new − old deltas.
    public let oldTeacher: String?
    /// The served student version this group tracks; nil pools all student versions.
    public let student: String?
    /// The teacher the student was distilled from (agreement and quality gap are measured against it);
    /// nil means `newTeacher`.
    public let pairedTeacher: String?
    /// The traffic slice; nil pools all slices.
    public let slice: String?
    /// A leaf holds the samples of exactly one (student, slice) combination, nil meaning the sample had none: the
    /// windows keep leaves only, and a closed window's groups are their standard fan-out (``fanOut``), so a sample
    /// updates one group per pane instead of four (see ``ClosedWindow/expandingLeaves()``).
    public let isLeaf: Bool
    /// The fields' hash, computed once: every sample looks its groups up in every pane it lands in, and hashing
    /// five strings each time was a tenth of the ingest cost. Not encoded.
    private let fingerprint: Int

    /// Creates a group key.
    public init(newTeacher: String, oldTeacher: String? = nil, student: String? = nil, pairedTeacher: String? = nil,
                slice: String? = nil, leaf: Bool = false) {
        self.newTeacher = newTeacher
        self.oldTeacher = oldTeacher
        self.student = student
        self.pairedTeacher = pairedTeacher
        self.slice = slice
        self.isLeaf = leaf
        var hasher = Hasher()
        hasher.combine(leaf)
        hasher.combine(newTeacher)
        hasher.combine(oldTeacher)
        hasher.combine(student)
        hasher.combine(pairedTeacher)
        hasher.combine(slice)
        fingerprint = hasher.finalize()
    }

    enum CodingKeys: String, CodingKey { case newTeacher, oldTeacher, student, pairedTeacher, slice, leaf }

    /// Decodes the fields (the fingerprint is recomputed); keys written before leaves existed are not leaves.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(newTeacher: try c.decode(String.self, forKey: .newTeacher),
                  oldTeacher: try c.decodeIfPresent(String.self, forKey: .oldTeacher),
                  student: try c.decodeIfPresent(String.self, forKey: .student),
                  pairedTeacher: try c.decodeIfPresent(String.self, forKey: .pairedTeacher),
                  slice: try c.decodeIfPresent(String.self, forKey: .slice),
                  leaf: try c.decodeIfPresent(Bool.self, forKey: .leaf) ?? false)
    }

    /// Encodes the fields; `leaf` only when set.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(newTeacher, forKey: .newTeacher)
        try c.encodeIfPresent(oldTeacher, forKey: .oldTeacher)
        try c.encodeIfPresent(student, forKey: .student)
        try c.encodeIfPresent(pairedTeacher, forKey: .pairedTeacher)
        try c.encodeIfPresent(slice, forKey: .slice)
        if isLeaf { try c.encode(true, forKey: .leaf) }
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(fingerprint) }

    public static func == (a: DistillGroupKey, b: DistillGroupKey) -> Bool {
        a.fingerprint == b.fingerprint && a.newTeacher == b.newTeacher && a.oldTeacher == b.oldTeacher
            && a.student == b.student && a.pairedTeacher == b.pairedTeacher && a.slice == b.slice && a.isLeaf == b.isLeaf
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

    /// A stable text form, `new|old|student|paired|slice` with `*` for nil (and `|leaf` for a leaf); used in
    /// decision ids.
    public var description: String {
        [newTeacher, oldTeacher ?? "*", student ?? "*", effectivePairedTeacher, slice ?? "*"].joined(separator: "|")
            + (isLeaf ? "|leaf" : "")
    }

    /// The leaf of a sample with this teacher pair, student version and slice (nil: the sample has none).
    public static func leaf(newTeacher: String, oldTeacher: String?, pairedTeacher: String?, student: String?,
                            slice: String?) -> DistillGroupKey {
        DistillGroupKey(newTeacher: newTeacher, oldTeacher: oldTeacher, student: student, pairedTeacher: pairedTeacher,
                        slice: slice, leaf: true)
    }

    /// The groups whose figures this key's samples belong to: for a leaf, the standard fan-out of its student and
    /// slice (`standardGroups`); any other key is its own group.
    public var fanOut: [DistillGroupKey] {
        guard isLeaf else { return [self] }
        return Self.standardGroups(newTeacher: newTeacher, oldTeacher: oldTeacher, pairedTeacher: pairedTeacher,
                                   student: student, slice: slice)
    }
}
