import CRdKafka
import Dispatch
import Logging
import Synchronization

// MARK: - PartitionReader

/// Reads chosen partitions from chosen offsets, outside any consumer group: no `group.id`, no rebalances, no
/// commits. For reading a topic back (a registry, a changelog, alerts already sent) rather than sharing its
/// partitions.
///
/// It uses librdkafka's partition-level consumer (`rd_kafka_consume_start_queue`), which has no group subsystem to
/// shut down. A group consumer used this way (assign, read, close) still creates and terminates one, and librdkafka
/// 2.0.2 can abort while terminating it (`rd_kafka_cgrp_terminated: assert: !rd_kafka_assignment_in_progress`).
public final class PartitionReader: Sendable {
    let handle: RdKafkaHandle
    /// Serialises assign, poll and close: they share the read queue and the started partitions.
    private let pollQueue = DispatchQueue(label: "distilld.kafka.reader.poll")
    /// Runs cluster queries without waiting behind a long poll.
    private let controlQueue = DispatchQueue(label: "distilld.kafka.reader.control")
    private let reading: Reading
    private let closed = Atomic<Bool>(false)

    /// `properties` are passed to librdkafka as they are, less `group.id`.
    public init(properties: KafkaProperties, logger: Logger = Logger(label: "distilld.kafka.reader")) throws(KafkaError) {
        var values = properties.withDefaults(FetchWakeup.queueDefaults).values
        values["group.id"] = nil
        handle = try RdKafkaHandle(RD_KAFKA_CONSUMER, properties: KafkaProperties(values), role: .consumer,
                                   logger: logger) { conf in
            rd_kafka_conf_set(conf, "enable.auto.commit", "false", nil, 0)
            rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", nil, 0)
        }
        reading = Reading(handle)
    }

    deinit {
        // On the poll queue: a close that timed out may still be stopping the partitions there.
        let reading = reading
        pollQueue.async { reading.stop() }
    }

    /// Reads exactly these partitions from these offsets (absolute, or `KafkaOffset.beginning`/`.end`/`.tail(n)`),
    /// instead of what it read before: records of the previous partitions still queued are dropped.
    public func assign(_ offsets: [TopicPartition: Int64]) async throws(KafkaError) {
        try checkOpen()
        let reading = reading
        try await pollQueue.result { reading.start(offsets) }.get()
    }

    /// Waits up to `timeout` for the first record, then takes what is ready, up to `maxMessages` records. Empty on
    /// timeout or before `assign`.
    public func poll(maxMessages: Int = 1024, timeout: Duration = .milliseconds(100)) async throws(KafkaError)
        -> ConsumerBatch {
        try checkOpen()
        let reading = reading
        let ms = timeout.milliseconds
        return await pollQueue.result { reading.poll(maxMessages: maxMessages, timeoutMs: ms) }
    }

    /// The partitions' high watermarks as the broker reports them now.
    public func highWatermarks(_ partitions: [TopicPartition], timeout: Duration = .seconds(5)) async throws(KafkaError)
        -> [TopicPartition: Int64] {
        let rk = handle
        return try await controlQueue.result { ClusterQueries.highWatermarks(rk, partitions, timeoutMs: timeout.milliseconds) }
            .get()
    }

    /// The number of partitions of `topic`, from the cluster's metadata.
    public func partitionCount(of topic: String, timeout: Duration = .seconds(10)) async throws(KafkaError) -> Int {
        let rk = handle
        return try await controlQueue.result { ClusterQueries.partitionCount(rk, of: topic, timeoutMs: timeout.milliseconds) }
            .get()
    }

    /// Client errors reported by librdkafka's `error_cb` so far (a partition that does not exist is reported here).
    public var clientErrors: [KafkaError] { handle.context.clientErrors.withLock { $0 } }

    /// Wake-ups sent to the broker threads as `poll` drained the prefetch queue (see `FetchWakeup`).
    public var fetchWakeups: Int { reading.wakeup.wakeups }

    /// Stops reading. Idempotent; the client itself goes when the reader is released.
    ///
    /// Returns after `timeout` even if librdkafka has not finished: stopping a partition waits, without a bound of its
    /// own, for the broker thread that fetches it.
    public func close(timeout: Duration = .seconds(30)) async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let reading = reading
        let logger = handle.context.logger
        await pollQueue.bounded(by: timeout) {
            reading.stop()
        } onTimeout: {
            logger.error("partition reader close did not finish within \(timeout); leaving it to finish later")
        }
    }

    private func checkOpen() throws(KafkaError) {
        guard !closed.load(ordering: .acquiring) else {
            throw KafkaError(.closed, reason: "the reader is closed", hint: "create a new reader")
        }
    }
}

/// The read queue and the partitions fetched into it. Used only on the reader's poll queue, hence
/// `@unchecked Sendable`. It holds the client handle, so the client goes only after its partitions are stopped.
private final class Reading: @unchecked Sendable {
    private let rk: RdKafkaHandle
    private var queue: OpaquePointer?
    private var topics: [String: OpaquePointer] = [:]
    private var started: [TopicPartition] = []
    private var topicNames: [OpaquePointer: String] = [:]

    /// Restarts fetching as `poll` drains the queue (librdkafka 2.0.2 waits up to 1 s otherwise).
    let wakeup: FetchWakeup

    init(_ rk: RdKafkaHandle) {
        self.rk = rk
        wakeup = FetchWakeup(rk)
    }

    func start(_ offsets: [TopicPartition: Int64]) -> Result<Void, KafkaError> {
        stopPartitions()
        // A fresh queue: records the previous partitions' fetchers already forwarded must not come back.
        guard let q = rd_kafka_queue_new(rk.pointer) else {
            return .failure(KafkaError(.consume, reason: "cannot create a read queue"))
        }
        queue = q
        for (tp, offset) in offsets.sorted(by: { $0.key < $1.key }) {
            let rkt = topic(tp.topic)
            if rd_kafka_consume_start_queue(rkt, tp.partition, offset, q) == -1 {
                let code = KafkaErrorCode(rd_kafka_last_error())
                stopPartitions()
                return .failure(KafkaError(.consume, code: code, reason: "start reading \(tp) at \(offset): \(code.message)"))
            }
            started.append(tp)
        }
        return .success(())
    }

    func poll(maxMessages: Int, timeoutMs: Int32) -> ConsumerBatch {
        guard let queue, maxMessages > 0 else { return ConsumerBatch(events: []) }
        var raw = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: maxMessages)
        let count = raw.withUnsafeMutableBufferPointer {
            rd_kafka_consume_batch_queue(queue, Int32(clamping: timeoutMs), $0.baseAddress, maxMessages)
        }
        var events: [ConsumerEvent] = []
        events.reserveCapacity(max(count, 0))
        var bytes = 0
        defer { wakeup.took(bytes: bytes, messages: count, full: count == maxMessages, from: rk) { started } }
        for i in 0..<max(count, 0) {
            guard let m = raw[i] else { continue }
            defer { rd_kafka_message_destroy(m) }
            bytes += m.pointee.len
            let err = m.pointee.err
            if err == RD_KAFKA_RESP_ERR__PARTITION_EOF { continue }
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                events.append(.error(KafkaError(failed: m.pointee, properties: rk.context.properties)))
                continue
            }
            events.append(.message(KafkaMessage(copying: m, topic: name(of: m.pointee.rkt))))
        }
        return ConsumerBatch(events: events)
    }

    /// Stops every partition and lets go of the queue and topic handles.
    func stop() {
        stopPartitions()
        for rkt in topics.values { rd_kafka_topic_destroy(rkt) }
        topics = [:]
        topicNames = [:]
    }

    private func stopPartitions() {
        for tp in started {
            if let rkt = topics[tp.topic] { _ = rd_kafka_consume_stop(rkt, tp.partition) }
        }
        started = []
        if let queue { rd_kafka_queue_destroy(queue) }
        queue = nil
    }

    private func topic(_ name: String) -> OpaquePointer {
        if let rkt = topics[name] { return rkt }
        let rkt = rd_kafka_topic_new(rk.pointer, name, nil)!
        topics[name] = rkt
        topicNames[rkt] = name
        return rkt
    }

    private func name(of rkt: OpaquePointer?) -> String {
        guard let rkt else { return "" }
        if let name = topicNames[rkt] { return name }
        return String(cString: rd_kafka_topic_name(rkt))
    }
}
