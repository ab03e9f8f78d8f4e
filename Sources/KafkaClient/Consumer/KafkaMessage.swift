import CRdKafka

// MARK: - KafkaMessage

/// A consumed record. Key, value and headers are copied out of librdkafka's buffers.
public struct KafkaMessage: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]
    /// The record's timestamp in ms since the epoch, when the broker gave one.
    public var timestamp: Int64?

    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]? = nil, value: [UInt8],
        headers: [KafkaHeader] = [], timestamp: Int64? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    /// The message's partition.
    public var topicPartition: TopicPartition { TopicPartition(topic, partition) }

    /// The first header with this name, as UTF-8 text.
    public func header(_ name: String) -> String? {
        headers.first { $0.name == name }?.value.map { String(decoding: $0, as: UTF8.self) }
    }
}

// MARK: - ConsumerEvent

/// What a poll returns, in the order it happened.
public enum ConsumerEvent: Sendable {
    /// A record.
    case message(KafkaMessage)
    /// The group gave this consumer these partitions. Messages from them follow.
    case assigned([TopicPartition])
    /// The group took these partitions away. Offsets marked done were committed before they were given up;
    /// messages already returned from them but not marked done will be redelivered to the next owner.
    case revoked([TopicPartition])
    /// The partitions were lost without a clean revoke (session timeout); nothing was committed for them.
    case lost([TopicPartition])
    /// A non-fatal consumer error (e.g. a broker connection failure); librdkafka keeps retrying.
    case error(KafkaError)
}

/// One poll's worth of events.
public struct ConsumerBatch: Sendable {
    /// Every event, in order.
    public var events: [ConsumerEvent]

    /// Just the records, in order.
    public var messages: [KafkaMessage] {
        events.compactMap { if case .message(let m) = $0 { m } else { nil } }
    }
}

/// How far a consumer is behind on one partition.
public struct PartitionLag: Sendable, Hashable {
    /// The offset of the next record the consumer will read (or its committed offset, if it has read none yet).
    public var position: Int64
    /// The partition's high watermark: the offset after the last record.
    public var highWatermark: Int64
    /// `highWatermark - position`, never negative.
    public var lag: Int64 { max(0, highWatermark - position) }
}

extension KafkaMessage {
    /// A copy of a message librdkafka returned (which the caller still destroys).
    init(copying raw: UnsafeMutablePointer<rd_kafka_message_t>, topic: String) {
        let m = raw.pointee
        let value = m.payload.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: m.len)) } ?? []
        let key = m.key.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: m.key_len)) }
        var headers: [KafkaHeader] = []
        var hdrs: OpaquePointer? = nil
        if rd_kafka_message_headers(raw, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs {
            var index = 0
            var name: UnsafePointer<CChar>? = nil
            var valuePtr: UnsafeRawPointer? = nil
            var size = 0
            while rd_kafka_header_get_all(hdrs, index, &name, &valuePtr, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let v = valuePtr.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: size)) }
                headers.append(KafkaHeader(String(cString: name!), v))
                index += 1
            }
        }
        var tsType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let ts = rd_kafka_message_timestamp(raw, &tsType)
        self.init(
            topic: topic, partition: m.partition, offset: m.offset, key: key, value: value, headers: headers,
            timestamp: tsType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : ts)
    }
}

extension KafkaError {
    /// The error a consumed message carries instead of a record (its payload is librdkafka's text, if any).
    init(failed m: rd_kafka_message_t, properties: KafkaProperties) {
        let detail = m.payload.map { String(cString: $0.assumingMemoryBound(to: CChar.self)) } ?? ""
        let code = KafkaErrorCode(m.err)
        self.init(.consume, code: code, reason: properties.redact("\(code.message)\(detail.isEmpty ? "" : ": " + detail)"))
    }
}
