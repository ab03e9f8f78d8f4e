import DistillCore
import SwiftProtobuf

// MARK: - ProtobufSampleDecoder

/// Strict decoder for the protobuf wire format of samples and labels (`proto/distill/v1/records.proto`).
///
/// It produces the same `DistillSample` and `LabelRecord` values as ``SampleDecoder`` (the JSON format) for the
/// same record, and applies the same rules with the same `RecordError` fields and rule codes: `id` required,
/// non-empty and at most `limits.maxIDBytes` UTF-8 bytes; `ts` required and not negative; every float finite; every
/// logits vector of length `classes`; `features`, when present and configured, of length `features`; `label` in
/// `0..<classes`; at least one teacher, with distinct non-empty versions; a student, when present, with a
/// non-empty version. Bytes that are not a serialization of the message throw `malformed_protobuf` (invalid UTF-8
/// in a string: `invalid_utf8`, field `$`); unknown fields are skipped.
///
/// What protobuf cannot say (see the `.proto`): an empty repeated field is absent, so empty logits are `missing`
/// and no teachers is `missing`; a field sent twice is merged (no `duplicate_key` but for teacher versions); there
/// is no `wrong_type`. The decoder holds no mutable state: share it freely.
public struct ProtobufSampleDecoder: Sendable {
    /// Number of classes C.
    public let classes: Int
    /// Expected length of `features`, or nil to accept any length.
    public let features: Int?
    /// Size and nesting limits, as for JSON (`maxDepth` bounds protobuf message nesting).
    public let limits: SampleDecoder.Limits

    /// Creates a decoder for C = `classes` and an optional feature dimension.
    public init(classes: Int, features: Int? = nil, limits: SampleDecoder.Limits = SampleDecoder.Limits()) {
        precondition(classes >= 1, "ProtobufSampleDecoder: classes must be >= 1")
        self.classes = classes
        self.features = features
        self.limits = limits
    }

    private var options: BinaryDecodingOptions {
        var o = BinaryDecodingOptions()
        o.discardUnknownFields = true
        o.messageDepthLimit = limits.maxDepth
        return o
    }

    // MARK: Sample

    /// Decodes one sample record.
    public func decode(_ bytes: [UInt8]) throws(RecordError) -> DistillSample {
        var sample = DistillSample(classes: classes)
        try decode(bytes, into: &sample)
        return sample
    }

    /// Decodes one sample record into `sample`, reusing its flat teacher-logits storage.
    public func decode(_ bytes: [UInt8], into sample: inout DistillSample) throws(RecordError) {
        try checkSize(bytes.count)
        let record: Distill_V1_SampleRecord
        do {
            record = try Distill_V1_SampleRecord(serializedBytes: bytes, options: options)
        } catch {
            throw Self.wireError(error)
        }
        try fill(&sample, from: record)
    }

    /// Validates `record` and writes it into `sample`. The checks run in the order the JSON decoder meets them in a
    /// record written in the schema's key order (required fields last), so a record with one fault gives the same
    /// error in both formats.
    func fill(_ sample: inout DistillSample, from record: Distill_V1_SampleRecord) throws(RecordError) {
        let c = classes
        if record.hasID { try Self.checkID(record.id, "id", maxBytes: limits.maxIDBytes) }
        if record.hasTs { try Self.checkTimestamp(record.ts, "ts") }
        if !record.features.isEmpty {
            try Self.checkFinite(record.features, "features")
            if let d = features, record.features.count != d {
                throw RecordError(field: "features", rule: .wrongLength,
                                  message: "has \(record.features.count) values; expected \(d)")
            }
        }
        sample.teacherVersions.removeAll(keepingCapacity: true)
        sample.teacherLogits.removeAll(keepingCapacity: true)
        for (t, teacher) in record.teachers.enumerated() {
            func name(_ suffix: String) -> String { "teachers[\(t)]" + suffix }
            if teacher.hasVersion && teacher.version.isEmpty {
                throw RecordError(field: name(".version"), rule: .outOfRange, message: "must be non-empty")
            }
            try Self.checkFinite(teacher.logits, name(".logits"))
            guard teacher.hasVersion else {
                throw RecordError(field: name(".version"), rule: .missing, message: "required field is absent")
            }
            guard !teacher.logits.isEmpty else {
                throw RecordError(field: name(".logits"), rule: .missing, message: "required field is absent")
            }
            if teacher.logits.count != c {
                throw RecordError(field: name(".logits"), rule: .wrongLength,
                                  message: "has \(teacher.logits.count) values; expected \(c)")
            }
            if sample.teacherVersions.contains(teacher.version) {
                throw RecordError(field: name(".version"), rule: .duplicateKey,
                                  message: "teacher version '\(teacher.version)' appears twice")
            }
            sample.teacherVersions.append(teacher.version)
            sample.teacherLogits.append(contentsOf: teacher.logits)
        }
        var studentVersion: String?
        if record.hasStudent {
            let student = record.student
            if student.hasVersion && student.version.isEmpty {
                throw RecordError(field: "student.version", rule: .outOfRange, message: "must be non-empty")
            }
            try Self.checkFinite(student.logits, "student.logits")
            guard student.hasVersion else {
                throw RecordError(field: "student.version", rule: .missing, message: "required field is absent")
            }
            guard !student.logits.isEmpty else {
                throw RecordError(field: "student.logits", rule: .missing, message: "required field is absent")
            }
            if student.logits.count != c {
                throw RecordError(field: "student.logits", rule: .wrongLength,
                                  message: "has \(student.logits.count) values; expected \(c)")
            }
            studentVersion = student.version
        }
        var label: Int?
        if record.hasLabel { label = try Self.checkLabel(record.label, "label", classes: c) }
        // Required fields last, as the JSON decoder checks them after the whole object.
        guard record.hasID else { throw RecordError(field: "id", rule: .missing, message: "required field is absent") }
        guard record.hasTs else { throw RecordError(field: "ts", rule: .missing, message: "required field is absent") }
        guard !record.teachers.isEmpty else {
            throw RecordError(field: "teachers", rule: .missing, message: "required field is absent")
        }
        sample.id = record.id
        sample.timestamp = record.ts
        sample.classes = c
        sample.features = record.features
        sample.studentVersion = studentVersion
        sample.studentLogits = studentVersion == nil ? [] : record.student.logits
        sample.label = label
        sample.slice = record.hasSlice ? record.slice : nil
    }

    // MARK: Label record

    /// Decodes a label record; `id`, `label` and `ts` are all required.
    public func decodeLabel(_ bytes: [UInt8]) throws(RecordError) -> LabelRecord {
        try checkSize(bytes.count)
        let record: Distill_V1_LabelRecord
        do {
            record = try Distill_V1_LabelRecord(serializedBytes: bytes, options: options)
        } catch {
            throw Self.wireError(error)
        }
        if record.hasID { try Self.checkID(record.id, "id", maxBytes: limits.maxIDBytes) }
        let label = record.hasLabel ? try Self.checkLabel(record.label, "label", classes: classes) : nil
        if record.hasTs { try Self.checkTimestamp(record.ts, "ts") }
        guard record.hasID else { throw RecordError(field: "id", rule: .missing, message: "required field is absent") }
        guard let label else {
            throw RecordError(field: "label", rule: .missing, message: "required field is absent")
        }
        guard record.hasTs else { throw RecordError(field: "ts", rule: .missing, message: "required field is absent") }
        return LabelRecord(id: record.id, label: label, timestamp: record.ts)
    }

    // MARK: Rules

    private func checkSize(_ count: Int) throws(RecordError) {
        guard count <= limits.maxRecordBytes else {
            throw RecordError(field: "$", rule: .tooLarge,
                              message: "record is \(count) bytes; the limit is \(limits.maxRecordBytes)")
        }
    }

    /// The rule for bytes SwiftProtobuf could not decode.
    static func wireError(_ error: any Error) -> RecordError {
        if let e = error as? BinaryDecodingError {
            switch e {
            case .invalidUTF8:
                return RecordError(field: "$", rule: .invalidUTF8, message: "a string field holds invalid UTF-8")
            case .messageDepthLimit:
                return RecordError(field: "$", rule: .tooDeep, message: "messages nest deeper than the limit")
            default:
                break
            }
        }
        return RecordError(field: "$", rule: .malformedProtobuf,
                           message: "not a serialized distill.v1 record (\(error)); check the topic's format")
    }

    static func checkID(_ id: String, _ field: String, maxBytes: Int) throws(RecordError) {
        let n = id.utf8.count
        if n == 0 { throw RecordError(field: field, rule: .outOfRange, message: "must be a non-empty string") }
        if n > maxBytes {
            throw RecordError(field: field, rule: .outOfRange, message: "is \(n) bytes; at most \(maxBytes) allowed")
        }
    }

    static func checkTimestamp(_ ts: Int64, _ field: String) throws(RecordError) {
        if ts < 0 { throw RecordError(field: field, rule: .outOfRange, message: "must not be negative") }
    }

    static func checkLabel(_ label: Int64, _ field: String, classes: Int) throws(RecordError) -> Int {
        guard label >= 0, label < Int64(classes) else {
            throw RecordError(field: field, rule: .outOfRange, message: "must be in 0..<\(classes)")
        }
        return Int(label)
    }

    /// Throws `not_finite` for the first NaN or ±Infinity, naming `field[i]` (the name is built only then).
    @inline(__always)
    static func checkFinite(_ values: [Float], _ field: @autoclosure () -> String) throws(RecordError) {
        let bad: Int? = values.withUnsafeBufferPointer { buffer in
            // Exponent bits all ones: NaN or ±Infinity. One pass, no branch per element but the loop's.
            var any: UInt32 = 0
            for v in buffer { any |= (~v.bitPattern & 0x7F80_0000) == 0 ? 1 : 0 }
            return any == 0 ? nil : buffer.firstIndex { !$0.isFinite }
        }
        if let bad {
            throw RecordError(field: "\(field())[\(bad)]", rule: .notFinite, message: "must be a finite number")
        }
    }
}
