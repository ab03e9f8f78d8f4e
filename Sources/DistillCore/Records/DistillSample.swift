// MARK: - Decoded records

/// One decoded, validated sample record (one Kafka message on the samples topic).
///
/// Logits are stored flat: teacher `t`'s logits are `teacherLogits[t*classes ..< (t+1)*classes]`.
/// Optional arrays are empty when the field was absent (`features`, `studentLogits`).
public struct DistillSample: Sendable, Equatable, Codable {
    /// Request id, the join key for labels: non-empty, at most `SampleDecoder.Limits.maxIDBytes` UTF-8 bytes.
    public var id: String
    /// Event time in milliseconds since the Unix epoch.
    public var timestamp: Int64
    /// Number of classes C; the length of every logits vector.
    public var classes: Int
    /// The student's input vector; empty when absent.
    public var features: [Float]
    /// Versions of the teachers that scored this request, in record order (at least one).
    public var teacherVersions: [String]
    /// Flat teacher logits, `teacherVersions.count × classes`.
    public var teacherLogits: [Float]
    /// Version of the served student, if the record carries one.
    public var studentVersion: String?
    /// Student logits (`classes` values); empty when `studentVersion` is nil.
    public var studentLogits: [Float]
    /// Ground-truth class index in `0..<classes`, if known.
    public var label: Int?
    /// Traffic slice tag, if any.
    public var slice: String?

    /// Creates a sample; `teacherLogits` must hold `teacherVersions.count × classes` values.
    public init(
        id: String, timestamp: Int64, classes: Int, features: [Float] = [], teacherVersions: [String],
        teacherLogits: [Float], studentVersion: String? = nil, studentLogits: [Float] = [], label: Int? = nil,
        slice: String? = nil
    ) {
        precondition(teacherLogits.count == teacherVersions.count * classes, "DistillSample: teacher logits size")
        precondition(studentVersion == nil ? studentLogits.isEmpty : studentLogits.count == classes,
                     "DistillSample: student logits size")
        self.id = id
        self.timestamp = timestamp
        self.classes = classes
        self.features = features
        self.teacherVersions = teacherVersions
        self.teacherLogits = teacherLogits
        self.studentVersion = studentVersion
        self.studentLogits = studentLogits
        self.label = label
        self.slice = slice
    }

    /// An empty sample to decode into with `SampleDecoder.decode(_:into:)`.
    public init(classes: Int) {
        self.id = ""
        self.timestamp = 0
        self.classes = classes
        self.features = []
        self.teacherVersions = []
        self.teacherLogits = []
        self.studentVersion = nil
        self.studentLogits = []
        self.label = nil
        self.slice = nil
    }

    /// Index of `version` in `teacherVersions`, or nil.

    public func teacherIndex(of version: String) -> Int? {
        teacherVersions.firstIndex(of: version)
    }

    /// Logits of teacher `index` as a new array (cold paths and tests).
    public func teacherLogits(at index: Int) -> [Float] {
        Array(teacherLogits[index * classes ..< (index + 1) * classes])
    }

    /// Calls `body` with teacher `index`'s logits, without copying.

    public func withTeacherLogits<R>(at index: Int, _ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try teacherLogits.withUnsafeBufferPointer { all in
            try body(UnsafeBufferPointer(rebasing: all[index * classes ..< (index + 1) * classes]))
        }
    }
}

extension DistillSample {
    enum CodingKeys: String, CodingKey {
        case id, timestamp, classes, features, teacherVersions, teacherLogits, studentVersion, studentLogits, label, slice
    }

    /// Decodes a checkpointed sample (arrays packed, see `PackedNumbers`) and checks its shape.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        timestamp = try c.decode(Int64.self, forKey: .timestamp)
        classes = try c.decode(Int.self, forKey: .classes)
        features = try c.decodePacked(Float.self, forKey: .features)
        teacherVersions = try c.decode([String].self, forKey: .teacherVersions)
        teacherLogits = try c.decodePacked(Float.self, forKey: .teacherLogits)
        studentVersion = try c.decodeIfPresent(String.self, forKey: .studentVersion)
        studentLogits = try c.decodePacked(Float.self, forKey: .studentLogits)
        label = try c.decodeIfPresent(Int.self, forKey: .label)
        slice = try c.decodeIfPresent(String.self, forKey: .slice)
        guard classes >= 1, teacherLogits.count == teacherVersions.count * classes,
              studentVersion == nil ? studentLogits.isEmpty : studentLogits.count == classes,
              label.map({ $0 >= 0 && $0 < classes }) ?? true
        else {
            throw DecodingError.dataCorruptedError(forKey: .teacherLogits, in: c,
                                                   debugDescription: "DistillSample: logits do not match the shape")
        }
    }

    /// Encodes the sample with its arrays packed.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(timestamp, forKey: .timestamp)
        try c.encode(classes, forKey: .classes)
        try c.encodePacked(features, forKey: .features)
        try c.encode(teacherVersions, forKey: .teacherVersions)
        try c.encodePacked(teacherLogits, forKey: .teacherLogits)
        try c.encodeIfPresent(studentVersion, forKey: .studentVersion)
        try c.encodePacked(studentLogits, forKey: .studentLogits)
        try c.encodeIfPresent(label, forKey: .label)
        try c.encodeIfPresent(slice, forKey: .slice)
    }
}

/// A late label record from the labels topic: `{"id": ..., "label": 3, "ts": ...}`.
public struct LabelRecord: Sendable, Equatable, Codable {
    /// Request id (join key).
    public var id: String
    /// Class index in `0..<classes`.
    public var label: Int
    /// Event time of the label in milliseconds since the Unix epoch.
    public var timestamp: Int64

    /// Creates a label record.
    public init(id: String, label: Int, timestamp: Int64) {
        self.id = id
        self.label = label
        self.timestamp = timestamp
    }
}
