import DistillCore
import SwiftProtobuf

// MARK: - Encoding records as protobuf

/// Writes samples and labels in the protobuf wire format: for producers written in Swift, `distilld bench` and the
/// tests. `ProtobufSampleDecoder` reads back exactly the values written.
public enum ProtobufRecordEncoder {
    /// The `distill.v1.SampleRecord` message of `sample`; absent optional fields stay unset.
    public static func message(_ sample: DistillSample) -> Distill_V1_SampleRecord {
        var m = Distill_V1_SampleRecord()
        m.id = sample.id
        m.ts = sample.timestamp
        m.features = sample.features
        m.teachers = sample.teacherVersions.indices.map { t in
            var teacher = Distill_V1_TeacherPrediction()
            teacher.version = sample.teacherVersions[t]
            teacher.logits = sample.teacherLogits(at: t)
            return teacher
        }
        if let version = sample.studentVersion {
            var student = Distill_V1_StudentPrediction()
            student.version = version
            student.logits = sample.studentLogits
            m.student = student
        }
        if let label = sample.label { m.label = Int64(label) }
        if let slice = sample.slice { m.slice = slice }
        return m
    }

    /// `sample` serialized as a `distill.v1.SampleRecord`.
    public static func encode(_ sample: DistillSample) -> [UInt8] {
        serialize(message(sample))
    }

    /// `label` serialized as a `distill.v1.LabelRecord`.
    public static func encode(_ label: LabelRecord) -> [UInt8] {
        var m = Distill_V1_LabelRecord()
        m.id = label.id
        m.label = Int64(label.label)
        m.ts = label.timestamp
        return serialize(m)
    }

    /// Any message's bytes. Serializing a message with no required fields cannot fail.
    public static func serialize(_ message: some SwiftProtobuf.Message) -> [UInt8] {
        // swiftlint:disable:next force_try
        try! message.serializedBytes()
    }
}
