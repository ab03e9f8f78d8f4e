import DistillCore
import KafkaClient

// MARK: - distill.students: online-student checkpoints

/// One record on `distill.students`: a published online student.
///
/// Envelope: key = student version; value = the checkpoint's safetensors bytes, unchanged (their
/// `__metadata__` holds `StudentCheckpointMetadata.stringDictionary`); headers:
/// - `content-type`: `application/octet-stream`
/// - `distill.format`: `distilld.student.v1`
/// - `distill.student.version`: the student version (same as the key)
/// - `distill.sha256`: lower-case hex SHA-256 of the value
/// - `distill.metadata`: `metadata` as JSON (sorted keys; `student-checkpoint-metadata.schema.json`)
///
/// The record timestamp is the checkpoint's `created_at`; give the checkpoint an event time (not the wall
/// clock) to keep replays byte-identical.
public struct StudentCheckpointRecord: Sendable, Equatable {
    /// Header with the format tag.
    public static let formatHeader = "distill.format"
    /// Header with the student version.
    public static let versionHeader = "distill.student.version"
    /// Header with the hex SHA-256 of the safetensors bytes.
    public static let digestHeader = "distill.sha256"
    /// Header with the metadata JSON.
    public static let metadataHeader = "distill.metadata"
    /// The default topic.
    public static let topic = "distill.students"

    /// Student version (the key).
    public var studentVersion: String
    /// The safetensors bytes (the value).
    public var safetensors: [UInt8]
    /// The typed metadata written to `distill.metadata`.
    public var metadata: StudentCheckpointRecordMetadata

    /// Builds the record of `checkpoint`, published as `studentVersion`.
    public init(checkpoint: StudentCheckpoint, studentVersion: String, context: DistillOutputContext) {
        let bytes = checkpoint.safetensors()
        self.studentVersion = studentVersion
        self.safetensors = bytes
        self.metadata = StudentCheckpointRecordMetadata(checkpoint: checkpoint, studentVersion: studentVersion,
                                                        safetensors: bytes, context: context)
    }

    /// The message key: the student version.
    public var key: String { studentVersion }

    /// The headers, in the order listed on the type.
    public func headers() throws -> [KafkaHeader] {
        [
            KafkaHeader("content-type", "application/octet-stream"),
            KafkaHeader(Self.formatHeader, StudentCheckpointMetadata.formatTag),
            KafkaHeader(Self.versionHeader, studentVersion),
            KafkaHeader(Self.digestHeader, metadata.safetensorsSHA256),
            KafkaHeader(Self.metadataHeader, try DistillOutputJSON.encode(metadata)),
        ]
    }

    /// The Kafka record: key, safetensors value, headers, timestamp = `created_at`.
    public func producerRecord(topic: String = StudentCheckpointRecord.topic) throws -> ProducerRecord {
        ProducerRecord(topic: topic, key: Array(key.utf8), value: safetensors, headers: try headers(),
                       timestamp: metadata.createdAt)
    }
}

/// The `distill.metadata` header of a student checkpoint: the safetensors `__metadata__` with typed values,
/// plus the version, the tensor list, a digest of the value and the config revision.
public struct StudentCheckpointRecordMetadata: Sendable, Codable, Equatable {
    /// `distilld.student.v1`.
    public var format: String
    /// Student version (the record key).
    public var studentVersion: String
    /// Teacher versions learned from since the previous checkpoint.
    public var teacherVersions: [String]
    /// Teacher strategy, e.g. `latest`, `lts:<version>`, `ensemble:3`.
    public var teacherStrategy: String
    /// Loss name: `hinton`, `dkd` or `auxiliary`.
    public var loss: String
    /// Distillation temperature.
    public var kdTemperature: Double?
    /// Samples learned in total.
    public var samplesSeen: Int
    /// Optimizer steps applied.
    public var optimizerSteps: Int
    /// Running mean batch loss, nats, if known.
    public var lossValue: Double?
    /// The gate evidence.
    public var evidence: StudentCheckpointRecordEvidence
    /// Fitted calibration temperature, if fitted.
    public var calibrationTemperature: Double?
    /// The decision record that caused the checkpoint (text from the caller).
    public var decision: String
    /// Creation time, ms since the epoch (the event time the caller passed).
    public var createdAt: Int64
    /// `createdAt` as RFC 3339.
    public var createdTime: String
    /// Input dimension D.
    public var inputDimension: Int
    /// Number of classes C.
    public var classes: Int
    /// Hidden layer widths.
    public var hiddenLayers: [Int]
    /// The tensors in the value: name and shape.
    public var tensors: [StudentCheckpointRecordTensor]
    /// Size of the value in bytes.
    public var safetensorsBytes: Int
    /// Lower-case hex SHA-256 of the value.
    public var safetensorsSHA256: String
    /// Configuration revision.
    public var configRevision: String

    /// The metadata of a checkpoint whose safetensors encoding is `safetensors`.
    public init(checkpoint: StudentCheckpoint, studentVersion: String, safetensors: [UInt8],
                context: DistillOutputContext) {
        let m = checkpoint.metadata
        format = StudentCheckpointMetadata.formatTag
        self.studentVersion = studentVersion
        teacherVersions = m.teacherVersions
        teacherStrategy = m.teacherStrategy
        loss = m.lossName
        // Via the shortest Float text, so 0.1 is written as 0.1 (as in `__metadata__`), not 0.10000000149.
        kdTemperature = DistillOutputJSON.finite(Double("\(m.kdTemperature)"))
        samplesSeen = m.samplesSeen
        optimizerSteps = m.optimizerSteps
        lossValue = DistillOutputJSON.finite(m.loss)
        evidence = StudentCheckpointRecordEvidence(m.evidence)
        calibrationTemperature = DistillOutputJSON.finite(m.calibrationTemperature)
        decision = m.decision
        createdAt = m.createdAtMilliseconds
        createdTime = DistillOutputTime.rfc3339(milliseconds: m.createdAtMilliseconds)
        inputDimension = m.inputDimension
        classes = m.classCount
        hiddenLayers = m.hiddenLayers
        tensors = checkpoint.tensors.map { StudentCheckpointRecordTensor(name: $0.name, shape: $0.shape) }
        safetensorsBytes = safetensors.count
        safetensorsSHA256 = DistillOutputSHA256.hex(safetensors)
        configRevision = context.configRevision
    }

    enum CodingKeys: String, CodingKey {
        case format, studentVersion = "student_version", teacherVersions = "teacher_versions",
             teacherStrategy = "teacher_strategy", loss, kdTemperature = "kd_temperature",
             samplesSeen = "samples_seen", optimizerSteps = "optimizer_steps", lossValue = "loss_value", evidence,
             calibrationTemperature = "calibration_temperature", decision, createdAt = "created_at",
             createdTime = "created_time", inputDimension = "input_dimension", classes,
             hiddenLayers = "hidden_layers", tensors, safetensorsBytes = "safetensors_bytes",
             safetensorsSHA256 = "safetensors_sha256", configRevision = "config_revision"
    }

    /// Encodes every key, `null` for absent or non-finite values.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format)
        try c.encode(studentVersion, forKey: .studentVersion)
        try c.encode(teacherVersions, forKey: .teacherVersions)
        try c.encode(teacherStrategy, forKey: .teacherStrategy)
        try c.encode(loss, forKey: .loss)
        try c.encodeFinite(kdTemperature, forKey: .kdTemperature)
        try c.encode(samplesSeen, forKey: .samplesSeen)
        try c.encode(optimizerSteps, forKey: .optimizerSteps)
        try c.encodeFinite(lossValue, forKey: .lossValue)
        try c.encode(evidence, forKey: .evidence)
        try c.encodeFinite(calibrationTemperature, forKey: .calibrationTemperature)
        try c.encode(decision, forKey: .decision)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(createdTime, forKey: .createdTime)
        try c.encode(inputDimension, forKey: .inputDimension)
        try c.encode(classes, forKey: .classes)
        try c.encode(hiddenLayers, forKey: .hiddenLayers)
        try c.encode(tensors, forKey: .tensors)
        try c.encode(safetensorsBytes, forKey: .safetensorsBytes)
        try c.encode(safetensorsSHA256, forKey: .safetensorsSHA256)
        try c.encode(configRevision, forKey: .configRevision)
    }
}

/// The checkpoint gate's evidence as written.
public struct StudentCheckpointRecordEvidence: Sendable, Codable, Equatable {
    /// Prequential top-1 agreement with the teacher.
    public var agreement: Double?
    /// Lower end of its interval.
    public var agreementLower: Double?
    /// Upper end of its interval.
    public var agreementUpper: Double?
    /// Prequential ECE, if known.
    public var ece: Double?
    /// Lower end of the ECE interval, if known.
    public var eceLower: Double?
    /// Upper end of the ECE interval, if known.
    public var eceUpper: Double?
    /// Samples behind the figures.
    public var samples: Int

    /// The written form of gate evidence (non-finite values become `null`).
    public init(_ e: GateEvidence) {
        agreement = DistillOutputJSON.finite(e.agreement)
        agreementLower = DistillOutputJSON.finite(e.agreementLower)
        agreementUpper = DistillOutputJSON.finite(e.agreementUpper)
        ece = DistillOutputJSON.finite(e.ece)
        eceLower = DistillOutputJSON.finite(e.eceInterval?.lowerBound)
        eceUpper = DistillOutputJSON.finite(e.eceInterval?.upperBound)
        samples = e.sampleCount
    }

    enum CodingKeys: String, CodingKey {
        case agreement, agreementLower = "agreement_lower", agreementUpper = "agreement_upper", ece,
             eceLower = "ece_lower", eceUpper = "ece_upper", samples
    }

    /// Encodes every key, `null` for absent or non-finite values.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeFinite(agreement, forKey: .agreement)
        try c.encodeFinite(agreementLower, forKey: .agreementLower)
        try c.encodeFinite(agreementUpper, forKey: .agreementUpper)
        try c.encodeFinite(ece, forKey: .ece)
        try c.encodeFinite(eceLower, forKey: .eceLower)
        try c.encodeFinite(eceUpper, forKey: .eceUpper)
        try c.encode(samples, forKey: .samples)
    }
}

/// A tensor listed in the checkpoint metadata.
public struct StudentCheckpointRecordTensor: Sendable, Codable, Equatable {
    /// Tensor name, e.g. `trunk.0.weight`.
    public var name: String
    /// Shape.
    public var shape: [Int]

    /// Creates a tensor entry.
    public init(name: String, shape: [Int]) {
        self.name = name
        self.shape = shape
    }
}
