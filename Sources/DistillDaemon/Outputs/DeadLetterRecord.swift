import DistillCore
import KafkaClient

// MARK: - distill.deadletter: rejected input records, bytes untouched

/// Why a record was dead-lettered: a stable code, a human explanation and the field at fault.
public struct DeadLetterReason: Sendable, Equatable {
    /// Stable machine code (`distill.reason`): a `RecordError.Rule` raw value (`missing`, `wrong_type`,
    /// `not_finite`, …), a `TeacherRegistryError.Code` raw value (`registry.invalid_record`), or a code of
    /// the caller's such as `invalid_teacher_record` or `unknown_teacher_version` (lower-case `[a-z0-9_.]`).
    public var code: String
    /// What was wrong and what to do (`distill.error`).
    public var message: String
    /// JSON path of the offending field, `$` for the record as a whole (`distill.field`).
    public var field: String

    /// Creates a reason; a nil or empty `field` means the record as a whole (`$`).
    public init(code: String, message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = (field?.isEmpty ?? true) ? "$" : field!
    }

    /// The reason of a sample or label that broke a wire-format rule.
    public init(_ error: RecordError) {
        self.init(code: error.rule.rawValue, message: error.message, field: error.field)
    }

    /// The reason of a teacher registry record that failed to decode or validate.
    public init(_ error: TeacherRegistryError) {
        self.init(code: error.code.rawValue, message: error.reason, field: error.field)
    }
}

/// One record on `distill.deadletter`: the original key and bytes, unchanged, with why and where from in
/// headers (`distill.reason`, `distill.error`, `distill.field`, `distill.source.topic`,
/// `distill.source.partition`, `distill.source.offset`, and `distill.source.timestamp` when known).
/// The original record's own headers follow distilld's, unchanged, so a reader taking the first header of
/// a name gets distilld's.
public struct DeadLetterRecord: Sendable, Equatable {
    /// Header with the stable reason code.
    public static let reasonHeader = "distill.reason"
    /// Header with the human explanation.
    public static let errorHeader = "distill.error"
    /// Header with the JSON path of the offending field.
    public static let fieldHeader = "distill.field"
    /// Header with the source topic.
    public static let topicHeader = "distill.source.topic"
    /// Header with the source partition (decimal).
    public static let partitionHeader = "distill.source.partition"
    /// Header with the source offset (decimal).
    public static let offsetHeader = "distill.source.offset"
    /// Header with the source record's timestamp (decimal ms), present when the source had one.
    public static let timestampHeader = "distill.source.timestamp"
    /// The default topic.
    public static let topic = "distill.deadletter"

    /// Source topic.
    public var sourceTopic: String
    /// Source partition.
    public var sourcePartition: Int32
    /// Source offset.
    public var sourceOffset: Int64
    /// Source record timestamp, ms, if any.
    public var sourceTimestamp: Int64?
    /// The original key.
    public var key: [UInt8]?
    /// The original value bytes.
    public var value: [UInt8]
    /// The original headers.
    public var originalHeaders: [KafkaHeader]
    /// Why it was rejected.
    public var reason: DeadLetterReason

    /// Creates a dead letter from the parts of the rejected record.
    public init(sourceTopic: String, sourcePartition: Int32, sourceOffset: Int64, sourceTimestamp: Int64? = nil,
                key: [UInt8]?, value: [UInt8], originalHeaders: [KafkaHeader] = [], reason: DeadLetterReason) {
        self.sourceTopic = sourceTopic
        self.sourcePartition = sourcePartition
        self.sourceOffset = sourceOffset
        self.sourceTimestamp = sourceTimestamp
        self.key = key
        self.value = value
        self.originalHeaders = originalHeaders
        self.reason = reason
    }

    /// The dead letter of a consumed message.
    public init(message: KafkaMessage, reason: DeadLetterReason) {
        self.init(sourceTopic: message.topic, sourcePartition: message.partition, sourceOffset: message.offset,
                  sourceTimestamp: message.timestamp, key: message.key, value: message.value,
                  originalHeaders: message.headers, reason: reason)
    }

    /// distilld's headers as name → text, in the order written (see `dead-letter-headers.schema.json`).
    public var distillHeaders: [(name: String, value: String)] {
        var h: [(name: String, value: String)] = [
            (Self.reasonHeader, reason.code),
            (Self.errorHeader, reason.message),
            (Self.fieldHeader, reason.field),
            (Self.topicHeader, sourceTopic),
            (Self.partitionHeader, String(sourcePartition)),
            (Self.offsetHeader, String(sourceOffset)),
        ]
        if let t = sourceTimestamp { h.append((Self.timestampHeader, String(t))) }
        return h
    }

    /// All headers: distilld's, then the original ones.
    public var headers: [KafkaHeader] { distillHeaders.map { KafkaHeader($0.name, $0.value) } + originalHeaders }

    /// The Kafka record: original key and value, `headers`, and the source timestamp (nil lets the producer
    /// stamp it).
    public func producerRecord(topic: String = DeadLetterRecord.topic) -> ProducerRecord {
        ProducerRecord(topic: topic, key: key, value: value, headers: headers, timestamp: sourceTimestamp)
    }
}
