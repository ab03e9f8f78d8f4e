import CRdKafka
import Dispatch
import Logging
import Synchronization

// MARK: - KafkaConsumer

/// A consumer-group member with explicit completion: an offset is stored, and later committed, only for the
/// messages the caller marks done. Auto-commit and automatic offset storage are off and cannot be turned on.
///
/// Every blocking librdkafka call runs on the consumer's own serial dispatch queue, so `poll` never blocks Swift's
/// cooperative pool. Rebalances come back from `poll` as events in order with the messages.
public final class KafkaConsumer: Sendable {
    let handle: RdKafkaHandle
    /// Serialises the poll loop and close; librdkafka serves the rebalance callback on it.
    private let pollQueue = DispatchQueue(label: "distilld.kafka.consumer.poll")
    /// Runs blocking control calls (commit, seek, watermarks) without waiting behind a long poll.
    private let controlQueue = DispatchQueue(label: "distilld.kafka.consumer.control")
    private let closed = Atomic<Bool>(false)
    /// Set by `subscribe`: close then leaves the group before it closes the client.
    private let subscribed = Atomic<Bool>(false)
    /// Restarts fetching as `poll` drains the prefetch queue (librdkafka 2.0.2 waits up to 1 s otherwise).
    private let fetchWakeup: FetchWakeup

    /// Creates a consumer in group `groupID`. `properties` are passed to librdkafka as they are.
    public init(
        groupID: String, properties: KafkaProperties, logger: Logger = Logger(label: "distilld.kafka.consumer")
    ) throws(KafkaError) {
        var props = properties.withDefaults(["auto.offset.reset": "earliest"])
            .withDefaults(FetchWakeup.queueDefaults)
        props["group.id"] = props["group.id"] ?? groupID
        handle = try RdKafkaHandle(RD_KAFKA_CONSUMER, properties: props, role: .consumer, logger: logger) { conf in
            // distilld owns offset storage and commits (see KafkaClientRole.managed).
            rd_kafka_conf_set(conf, "enable.auto.commit", "false", nil, 0)
            rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", nil, 0)
            rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, _ in
                KafkaConsumer.rebalance(rk!, err, partitions!)
            }
        }
        // Route the main queue (errors, rebalances) to the consumer queue, so one poll serves all.
        rd_kafka_poll_set_consumer(handle.pointer)
        fetchWakeup = FetchWakeup(handle)
    }

    deinit {
        if !closed.load(ordering: .acquiring) { rd_kafka_consumer_close(handle.pointer) }
    }

    // MARK: Subscription

    /// Joins the group and subscribes to `topics`. Assignments arrive later as `.assigned` events.
    public func subscribe(_ topics: [String]) throws(KafkaError) {
        let list = TopicPartitionList(topics.map { TopicPartition($0, RD_KAFKA_PARTITION_UA) })
        if let error = KafkaError.from(rd_kafka_subscribe(handle.pointer, list.pointer), .consume, "subscribe to \(topics)") {
            throw error
        }
        subscribed.store(true, ordering: .releasing)
    }

    /// Reads exactly these partitions from these offsets, outside group management (no rebalances).
    /// Use `KafkaOffset.beginning` to read a topic from its start, as every instance does with the registry.
    public func assign(_ offsets: [TopicPartition: Int64]) throws(KafkaError) {
        let list = TopicPartitionList(offsets: offsets)
        if let error = KafkaError.from(rd_kafka_assign(handle.pointer, list.pointer), .consume, "assign") { throw error }
    }

    /// Offsets to start from when the group assigns these partitions, overriding the committed ones: a restored
    /// state checkpoint may cover more than was committed before a crash.
    public func setStartOffsets(_ offsets: [TopicPartition: Int64]) {
        handle.context.startOffsets.withLock { $0 = offsets }
    }

    /// Runs `handler` inside the rebalance callback, before partitions are given up: their next owner is assigned only
    /// after it returns (e.g. to make sure what was produced for them is acknowledged). Keep it short: the whole group
    /// waits.
    public func beforeRevoke(_ handler: @escaping @Sendable ([TopicPartition]) -> Void) {
        handle.context.beforeRevoke.withLock { $0 = handler }
    }

    /// The partitions currently assigned to this consumer.
    public var assignment: [TopicPartition] { Self.assignment(of: handle.pointer) }

    private static func assignment(of rk: OpaquePointer) -> [TopicPartition] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>? = nil
        guard rd_kafka_assignment(rk, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return [] }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        return TopicPartitionList(borrowing: list).partitions.sorted()
    }

    // MARK: Polling

    /// Waits up to `timeout` for the first event, then gathers what is ready, up to `maxMessages` records.
    /// Returns an empty batch on timeout. Runs on the consumer's own queue.
    public func poll(maxMessages: Int = 1024, timeout: Duration = .milliseconds(100)) async throws(KafkaError) -> ConsumerBatch {
        guard !closed.load(ordering: .acquiring) else {
            throw KafkaError(.closed, reason: "the consumer is closed", hint: "create a new consumer")
        }
        let rk = handle
        let ms = timeout.milliseconds
        let wakeup = fetchWakeup
        return await pollQueue.result {
            KafkaConsumer.pollBlocking(rk, maxMessages: maxMessages, timeoutMs: ms, wakeup: wakeup)
        }
    }

    /// `poll` on the calling thread, which it blocks: for a caller that owns a thread (a benchmark's consume loop on
    /// a pinned CPU, with librdkafka's threads created from it). Never call it while a `poll` or `close` runs.
    public func pollOnThisThread(maxMessages: Int = 1024, timeout: Duration = .milliseconds(100))
        throws(KafkaError) -> ConsumerBatch {
        guard !closed.load(ordering: .acquiring) else {
            throw KafkaError(.closed, reason: "the consumer is closed", hint: "create a new consumer")
        }
        return KafkaConsumer.pollBlocking(handle, maxMessages: maxMessages, timeoutMs: timeout.milliseconds,
                                          wakeup: fetchWakeup)
    }

    private static func pollBlocking(_ rk: RdKafkaHandle, maxMessages: Int, timeoutMs: Int32,
                                     wakeup: FetchWakeup) -> ConsumerBatch {
        var events: [ConsumerEvent] = []
        var messages = 0
        var bytes = 0
        defer {
            wakeup.took(bytes: bytes, messages: messages, full: messages == maxMessages, from: rk) {
                KafkaConsumer.assignment(of: rk.pointer)
            }
        }
        var topicNames: [OpaquePointer: String] = [:]
        var wait = timeoutMs
        while messages < maxMessages {
            let raw = rd_kafka_consumer_poll(rk.pointer, wait)
            // Rebalances raised inside this poll come first: they happened before the message returned with them.
            events.append(contentsOf: rk.context.drainEvents())
            guard let raw else { break }
            defer { rd_kafka_message_destroy(raw) }
            wait = 0
            let m = raw.pointee
            if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF { continue }
                events.append(.error(KafkaError(failed: m, properties: rk.context.properties)))
                continue
            }
            let topic: String
            if let cached = topicNames[m.rkt] {
                topic = cached
            } else {
                topic = String(cString: rd_kafka_topic_name(m.rkt))
                topicNames[m.rkt] = topic
            }
            events.append(.message(KafkaMessage(copying: raw, topic: topic)))
            messages += 1
            bytes += m.len
        }
        return ConsumerBatch(events: events)
    }

    // MARK: Rebalance

    /// Runs on the poll queue inside `rd_kafka_consumer_poll`. On revoke it commits what the caller marked done
    /// before giving the partitions up, so the next owner resumes there. That commit is best effort (the
    /// coordinator may refuse it mid-rebalance); what it misses is redelivered, never skipped.
    private static func rebalance(
        _ rk: OpaquePointer, _ err: rd_kafka_resp_err_t,
        _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>
    ) {
        guard let context = ClientContext.from(rk) else { return }
        let list = TopicPartitionList(borrowing: partitions)
        // NULL once the consumer has left its group (an unsubscribe before close): not cooperative then.
        let cooperative = rd_kafka_rebalance_protocol(rk).map { String(cString: $0) } == "COOPERATIVE"
        var event: ConsumerEvent
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            // Start where the caller's durable state ends, set before fetching begins (a seek afterwards would
            // race with records already fetched from the committed offset).
            let starts = context.startOffsets.withLock { $0 }
            if !starts.isEmpty {
                for i in 0..<Int(partitions.pointee.cnt) {
                    let e = partitions.pointee.elems[i]
                    if let offset = starts[TopicPartition(String(cString: e.topic), e.partition)] {
                        partitions.pointee.elems[i].offset = offset
                    }
                }
            }
            if cooperative {
                if let error = rd_kafka_incremental_assign(rk, partitions) {
                    context.logger.error("\(KafkaError.consuming(error, .rebalance, "incremental assign"))")
                }
            } else {
                rd_kafka_assign(rk, partitions)
            }
            event = .assigned(list.partitions.sorted())
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            if let handler = context.beforeRevoke.withLock({ $0 }) { handler(list.partitions.sorted()) }
            if rd_kafka_assignment_lost(rk) != 0 {
                event = .lost(list.partitions.sorted())
            } else {
                let err = KafkaConsumer.commitStored(rk, timeoutMs: 10_000)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
                    context.logger.warning(
                        "committing done offsets on revoke failed: \(KafkaErrorCode(err)); they will be redelivered")
                }
                event = .revoked(list.partitions.sorted())
            }
            if cooperative {
                if let error = rd_kafka_incremental_unassign(rk, partitions) {
                    context.logger.error("\(KafkaError.consuming(error, .rebalance, "incremental unassign"))")
                }
            } else {
                rd_kafka_assign(rk, nil)
            }
        default:
            rd_kafka_assign(rk, nil)
            event = .error(KafkaError.from(err, .rebalance, "rebalance failed")!)
        }
        context.pendingEvents.withLock { $0.append(event) }
    }

    // MARK: Completion and commits

    /// Marks `message` and everything before it on its partition as done: its next offset is stored for commit.
    /// Call in offset order per partition. Throws if the partition is no longer assigned (it was revoked).
    public func markDone(_ message: KafkaMessage) throws(KafkaError) {
        try markDone([message.topicPartition: message.offset + 1])
    }

    /// Stores `nextOffsets` (the offset of the next record to read, per partition) for the next commit.
    public func markDone(_ nextOffsets: [TopicPartition: Int64]) throws(KafkaError) {
        guard !nextOffsets.isEmpty else { return }
        let list = TopicPartitionList(offsets: nextOffsets)
        let err = KafkaErrorCode(rd_kafka_offsets_store(handle.pointer, list.pointer))
        let bad = list.elements.first { $0.error != nil }
        guard err != .noError || bad != nil else { return }
        let code = bad?.error ?? err
        let where_ = bad.map { "offset \($0.offset) for \($0.tp)" } ?? "offsets for \(nextOffsets.keys.sorted())"
        throw KafkaError(
            .commit, code: code, reason: "cannot store \(where_): \(code.message)",
            hint: "the partition is not (or no longer) assigned to this consumer; its owner will reprocess it")
    }

    /// Commits the stored offsets and waits up to `timeout` for the coordinator's answer. Nothing stored is not an
    /// error. A commit not answered in time throws `timedOut`; it may still land later, which is harmless because a
    /// stored offset only covers what is already done.
    public func commit(timeout: Duration = .seconds(30)) async throws(KafkaError) {
        let rk = handle
        let ms = timeout.milliseconds
        let err = await controlQueue.result { KafkaConsumer.commitStored(rk.pointer, timeoutMs: ms) }
        if err == RD_KAFKA_RESP_ERR__NO_OFFSET { return }
        if let error = KafkaError.from(err, .commit, "commit offsets") { throw error }
    }

    /// Commits the stored offsets of the current assignment, waiting at most `timeoutMs` for the result.
    /// `rd_kafka_commit(.., async: 0)` waits without bound: with no coordinator reachable it never returns.
    static func commitStored(_ rk: OpaquePointer, timeoutMs: Int32) -> rd_kafka_resp_err_t {
        guard let queue = rd_kafka_queue_new(rk) else { return RD_KAFKA_RESP_ERR__FAIL }
        defer { rd_kafka_queue_destroy(queue) }
        let err = rd_kafka_commit_queue(rk, nil, queue, nil, nil)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { return err }
        guard let event = rd_kafka_queue_poll(queue, timeoutMs) else { return RD_KAFKA_RESP_ERR__TIMED_OUT }
        defer { rd_kafka_event_destroy(event) }
        return rd_kafka_event_error(event)
    }

    /// The group's committed offsets for `partitions` (`KafkaOffset.stored`-like negatives mean none).
    public func committed(
        _ partitions: [TopicPartition], timeout: Duration = .seconds(10)
    ) async throws(KafkaError) -> [TopicPartition: Int64] {
        let rk = handle
        let ms = timeout.milliseconds
        let (err, elements) = await controlQueue.result {
            let list = TopicPartitionList(partitions)
            let err = rd_kafka_committed(rk.pointer, list.pointer, ms)
            return (KafkaErrorCode(err), list.elements.map { ($0.tp, $0.offset) })
        }
        if err != .noError { throw KafkaError(.commit, code: err, reason: "fetch committed offsets: \(err.message)") }
        return Dictionary(elements, uniquingKeysWith: { a, _ in a })
    }

    // MARK: Flow control

    /// Moves the fetch position of an assigned partition. The next poll returns records from `offset`.
    public func seek(_ partition: TopicPartition, to offset: Int64, timeout: Duration = .seconds(10)) async throws(KafkaError) {
        let rk = handle
        let ms = timeout.milliseconds
        let result: KafkaError? = await controlQueue.result {
            let list = TopicPartitionList([partition], offset: offset)
            if let error = rd_kafka_seek_partitions(rk.pointer, list.pointer, ms) {
                return KafkaError.consuming(error, .seek, "seek \(partition) to \(offset)")
            }
            if let bad = list.elements.first(where: { $0.error != nil }) {
                return KafkaError(.seek, code: bad.error, reason: "seek \(partition) to \(offset): \(bad.error!.message)",
                                  hint: "seek works only on partitions currently assigned to this consumer")
            }
            return nil
        }
        if let result { throw result }
    }

    /// Stops fetching from these partitions until `resume`; their position is kept.
    public func pause(_ partitions: [TopicPartition]) throws(KafkaError) {
        let list = TopicPartitionList(partitions)
        if let error = KafkaError.from(rd_kafka_pause_partitions(handle.pointer, list.pointer), .consume, "pause") {
            throw error
        }
    }

    /// Resumes fetching from paused partitions.
    public func resume(_ partitions: [TopicPartition]) throws(KafkaError) {
        let list = TopicPartitionList(partitions)
        if let error = KafkaError.from(rd_kafka_resume_partitions(handle.pointer, list.pointer), .consume, "resume") {
            throw error
        }
    }

    /// The high watermark librdkafka last saw for `partition` in a fetch response, without a round trip; nil
    /// before the first response.
    public func cachedHighWatermark(_ partition: TopicPartition) -> Int64? {
        var low: Int64 = -1
        var high: Int64 = -1
        rd_kafka_get_watermark_offsets(handle.pointer, partition.topic, partition.partition, &low, &high)
        return high >= 0 ? high : nil
    }

    /// The partitions' high watermarks as the broker reports them now (never the cache): one ListOffsets request per
    /// leader for all of them, and `timeout` bounds the whole call. (Asked one partition at a time, each query waited
    /// behind this consumer's fetch in flight on the same connection, up to `fetch.wait.max.ms` apiece: the merge stage
    /// stalled for seconds.)
    public func highWatermarks(_ partitions: [TopicPartition], timeout: Duration = .seconds(5)) async throws(KafkaError)
        -> [TopicPartition: Int64] {
        let rk = handle
        return try await controlQueue.result { ClusterQueries.highWatermarks(rk, partitions, timeoutMs: timeout.milliseconds) }
            .get()
    }

    /// Lag per assigned partition: the high watermark minus this consumer's position (or its committed offset
    /// when it has not fetched yet). Watermarks come from librdkafka's cache, filled by every fetch response, so
    /// this is cheap; the broker is asked only for partitions with no cached watermark yet, all of them in one
    /// request per leader (asked one partition at a time, a fresh assignment of many partitions took that many
    /// round trips, each up to `timeout`).
    public func lag(timeout: Duration = .seconds(5)) async throws(KafkaError) -> [TopicPartition: PartitionLag] {
        let partitions = assignment
        guard !partitions.isEmpty else { return [:] }
        let rk = handle
        let ms = timeout.milliseconds
        let result: Result<[TopicPartition: PartitionLag], KafkaError> = await controlQueue.result {
            let positions = TopicPartitionList(partitions)
            rd_kafka_position(rk.pointer, positions.pointer)
            var unknown: [TopicPartition] = []
            var uncached: [TopicPartition] = []
            var out: [TopicPartition: (position: Int64, low: Int64, high: Int64)] = [:]
            for (tp, position, _) in positions.elements {
                var low: Int64 = -1
                var high: Int64 = -1
                rd_kafka_get_watermark_offsets(rk.pointer, tp.topic, tp.partition, &low, &high)
                if high < 0 { uncached.append(tp) }
                if position < 0 { unknown.append(tp) }
                out[tp] = (position, low, high)
            }
            if !uncached.isEmpty {
                let highs: [TopicPartition: Int64], lows: [TopicPartition: Int64]
                switch ClusterQueries.highWatermarks(rk, uncached, timeoutMs: ms) {
                case .success(let h): highs = h
                case .failure(let error): return .failure(error)
                }
                switch ClusterQueries.lowWatermarks(rk, uncached, timeoutMs: ms) {
                case .success(let l): lows = l
                case .failure(let error): return .failure(error)
                }
                for tp in uncached {
                    out[tp]!.high = highs[tp] ?? -1
                    out[tp]!.low = lows[tp] ?? -1
                }
            }
            var committed: [TopicPartition: Int64] = [:]
            if !unknown.isEmpty {
                let list = TopicPartitionList(unknown)
                if rd_kafka_committed(rk.pointer, list.pointer, ms) == RD_KAFKA_RESP_ERR_NO_ERROR {
                    for e in list.elements { committed[e.tp] = e.offset }
                }
            }
            var lags: [TopicPartition: PartitionLag] = [:]
            for (tp, v) in out {
                var at = v.position
                if at < 0 { at = committed[tp] ?? -1 }
                if at < 0 { at = max(v.low, 0) }
                lags[tp] = PartitionLag(position: at, highWatermark: v.high)
            }
            return .success(lags)
        }
        return try result.get()
    }

    /// The number of partitions of `topic`, from the cluster's metadata.
    public func partitionCount(of topic: String, timeout: Duration = .seconds(10)) async throws(KafkaError) -> Int {
        let rk = handle
        return try await controlQueue.result { ClusterQueries.partitionCount(rk, of: topic, timeoutMs: timeout.milliseconds) }
            .get()
    }

    // MARK: Shutdown

    /// Leaves the group cleanly: commits the offsets marked done, revokes the assignment, then closes. Idempotent.
    ///
    /// Returns after `timeout` even if librdkafka has not finished: with no broker reachable,
    /// `rd_kafka_consumer_close` can wait forever for the coordinator (librdkafka #3740). The client is then left
    /// open, and whatever was not committed is redelivered to the next owner.
    public func close(timeout: Duration = .seconds(30)) async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let rk = handle
        let leave = subscribed.load(ordering: .acquiring)
        let commitMs = max(1, timeout.milliseconds / 2)
        // The logger, not the handle, in the timeout: holding the handle there kept librdkafka's threads alive for
        // `timeout` after every close.
        let logger = rk.context.logger
        await pollQueue.bounded(by: timeout) {
            // Commit while the membership is still stable; the commit inside the revoke callback can be refused
            // (REBALANCE_IN_PROGRESS) once leaving has started.
            let commitErr = KafkaConsumer.commitStored(rk.pointer, timeoutMs: commitMs)
            if commitErr != RD_KAFKA_RESP_ERR_NO_ERROR && commitErr != RD_KAFKA_RESP_ERR__NO_OFFSET {
                rk.context.logger.warning(
                    "commit on close failed: \(KafkaErrorCode(commitErr)); records done since the last commit will be redelivered")
            }
            if leave { KafkaConsumer.leaveGroup(rk, timeoutMs: min(commitMs, 5_000)) }
            let err = rd_kafka_consumer_close(rk.pointer)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                rk.context.logger.warning("consumer close: \(KafkaErrorCode(err).message)")
            }
            _ = rk.context.drainEvents()
        } onTimeout: {
            logger.error(
                "consumer close did not finish within \(timeout): no broker answered; leaving the client open (offsets not committed are redelivered)")
        }
    }

    /// Unsubscribes and polls until the revocation has run and the assignment has been empty for a few polls (at
    /// most `timeoutMs`). librdkafka 2.0.2 aborts (`rd_kafka_cgrp_terminated: assert
    /// !rd_kafka_assignment_in_progress`, librdkafka #4027/#4792) when `rd_kafka_consumer_close` finishes while a
    /// rebalance is still being applied; leaving the group first and letting the unassignment settle avoids that.
    /// Records fetched meanwhile are dropped: they were not marked done, so they are redelivered to the next owner.
    private static func leaveGroup(_ rk: RdKafkaHandle, timeoutMs: Int32) {
        rd_kafka_unsubscribe(rk.pointer)
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutMs))
        var settled = 0
        while settled < 3 && ContinuousClock.now < deadline {
            if let m = rd_kafka_consumer_poll(rk.pointer, 50) { rd_kafka_message_destroy(m) }
            settled = assignment(of: rk.pointer).isEmpty ? settled + 1 : 0
        }
        _ = rk.context.drainEvents()
    }

    /// Client errors reported by librdkafka's `error_cb` so far.
    public var clientErrors: [KafkaError] { handle.context.clientErrors.withLock { $0 } }

    /// Wake-ups sent to the broker threads as `poll` drained the prefetch queue (see `FetchWakeup`).
    public var fetchWakeups: Int { fetchWakeup.wakeups }
}

extension Duration {
    /// Whole milliseconds, clamped to Int32 as librdkafka takes them.
    var milliseconds: Int32 {
        let (s, atto) = components
        return Int32(clamping: s * 1000 + atto / 1_000_000_000_000_000)
    }
}
