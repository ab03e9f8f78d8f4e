import CRdKafka

// MARK: - TopicPartitionList

/// Owns an `rd_kafka_topic_partition_list_t`. Used only on the thread that created it.
final class TopicPartitionList {
    let pointer: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>
    private let owned: Bool

    init(capacity: Int = 1) {
        pointer = rd_kafka_topic_partition_list_new(Int32(max(capacity, 1)))
        owned = true
    }

    /// Borrows a list librdkafka owns (e.g. inside a rebalance callback).
    init(borrowing pointer: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        self.pointer = pointer
        owned = false
    }

    convenience init(_ partitions: some Collection<TopicPartition>, offset: Int64? = nil) {
        self.init(capacity: partitions.count)
        for tp in partitions { add(tp, offset: offset) }
    }

    convenience init(offsets: [TopicPartition: Int64]) {
        self.init(capacity: offsets.count)
        for (tp, offset) in offsets { add(tp, offset: offset) }
    }

    deinit {
        if owned { rd_kafka_topic_partition_list_destroy(pointer) }
    }

    func add(_ tp: TopicPartition, offset: Int64? = nil) {
        let element = rd_kafka_topic_partition_list_add(pointer, tp.topic, tp.partition)!
        if let offset { element.pointee.offset = offset }
    }

    var count: Int { Int(pointer.pointee.cnt) }

    /// Each element's partition, offset and per-partition error.
    var elements: [(tp: TopicPartition, offset: Int64, error: KafkaErrorCode?)] {
        (0..<count).map { i in
            let e = pointer.pointee.elems[i]
            let err = e.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaErrorCode(e.err)
            return (TopicPartition(String(cString: e.topic), e.partition), e.offset, err)
        }
    }

    var partitions: [TopicPartition] { elements.map(\.tp) }
}

extension [CChar] {
    /// The NUL-terminated text in a C error buffer.
    var text: String {
        String(decoding: prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
