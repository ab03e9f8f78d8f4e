import CRdKafka

/// Blocking questions to the cluster that any client handle can ask. Call them off Swift's cooperative pool.
enum ClusterQueries {
    /// The partitions' high watermarks as the broker reports them now (never librdkafka's cache): one ListOffsets
    /// request per leader for all of them, and `timeoutMs` bounds the whole call.
    static func highWatermarks(_ rk: RdKafkaHandle, _ partitions: [TopicPartition], timeoutMs: Int32)
        -> Result<[TopicPartition: Int64], KafkaError> {
        offsets(rk, partitions, at: KafkaOffset.end, "high watermark", timeoutMs: timeoutMs)
    }

    /// The partitions' low watermarks (first offset retained), as `highWatermarks` asks for the high ones.
    static func lowWatermarks(_ rk: RdKafkaHandle, _ partitions: [TopicPartition], timeoutMs: Int32)
        -> Result<[TopicPartition: Int64], KafkaError> {
        offsets(rk, partitions, at: KafkaOffset.beginning, "low watermark", timeoutMs: timeoutMs)
    }

    /// ListOffsets with the special timestamps -1 (latest: the log end offset) or -2 (earliest).
    private static func offsets(_ rk: RdKafkaHandle, _ partitions: [TopicPartition], at timestamp: Int64, _ what: String,
                                timeoutMs: Int32) -> Result<[TopicPartition: Int64], KafkaError> {
        let unique = Array(Set(partitions))
        guard !unique.isEmpty else { return .success([:]) }
        let list = TopicPartitionList(unique, offset: timestamp)
        let err = rd_kafka_offsets_for_times(rk.pointer, list.pointer, timeoutMs)
        if let error = KafkaError.from(err, .consume, "query \(what)s of \(unique.count) partition(s)") {
            return .failure(error)
        }
        var out: [TopicPartition: Int64] = [:]
        for (tp, offset, error) in list.elements {
            if let error {
                return .failure(KafkaError(.consume, code: error, reason: "query \(what) of \(tp): \(error.message)"))
            }
            out[tp] = offset
        }
        return .success(out)
    }

    /// The number of partitions of `topic`, from the cluster's metadata.
    static func partitionCount(_ rk: RdKafkaHandle, of topic: String, timeoutMs: Int32) -> Result<Int, KafkaError> {
        let rkt = rd_kafka_topic_new(rk.pointer, topic, nil)
        defer { rd_kafka_topic_destroy(rkt) }
        var metadata: UnsafePointer<rd_kafka_metadata>? = nil
        let err = rd_kafka_metadata(rk.pointer, 0, rkt, &metadata, timeoutMs)
        if let error = KafkaError.from(err, .consume, "metadata of \(topic)") { return .failure(error) }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard let md = metadata?.pointee, md.topic_cnt > 0 else {
            return .failure(KafkaError(.topic, code: .unknownTopicOrPartition, reason: "topic \(topic) not found"))
        }
        let t = md.topics[0]
        if let error = KafkaError.from(t.err, .topic, "metadata of \(topic)") { return .failure(error) }
        return .success(Int(t.partition_cnt))
    }
}
