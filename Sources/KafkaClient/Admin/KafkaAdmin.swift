import CRdKafka
import Logging

// MARK: - KafkaAdmin

/// Topic creation on real brokers through the Admin API. (The embedded broker does not answer CreateTopics;
/// use `EmbeddedBroker.createTopic` there.)
public final class KafkaAdmin: Sendable {
    private let handle: RdKafkaHandle

    /// Creates an admin client. `properties` are passed to librdkafka as they are.
    public init(properties: KafkaProperties, logger: Logger = Logger(label: "distilld.kafka.admin")) throws(KafkaError) {
        handle = try RdKafkaHandle(RD_KAFKA_PRODUCER, properties: properties, role: .admin, logger: logger)
    }

    /// Creates the topics that do not exist yet. A topic that already exists is not an error.
    /// Returns the names that were created.
    @discardableResult
    public func createTopics(_ topics: [TopicSpec], timeout: Duration = .seconds(30)) async throws(KafkaError) -> [String] {
        guard !topics.isEmpty else { return [] }
        if let bad = topics.first(where: { $0.partitions < 1 || $0.replicationFactor < 1 || $0.name.isEmpty }) {
            throw KafkaError(.admin, reason: "topic '\(bad.name)' needs a name, ≥ 1 partition and a replication factor ≥ 1",
                             hint: "fix the topic definition in streams/topics.yaml")
        }
        let rk = handle
        let result: Result<[String], KafkaError> = await runBlocking {
            KafkaAdmin.createBlocking(rk, topics, timeoutMs: timeout.milliseconds)
        }
        return try result.get()
    }

    private static func createBlocking(
        _ rk: RdKafkaHandle, _ topics: [TopicSpec], timeoutMs: Int32
    ) -> Result<[String], KafkaError> {
        var errstr = [CChar](repeating: 0, count: 512)
        var newTopics: [OpaquePointer?] = []
        defer { newTopics.forEach { rd_kafka_NewTopic_destroy($0) } }
        for spec in topics {
            guard let nt = rd_kafka_NewTopic_new(spec.name, Int32(spec.partitions), Int32(spec.replicationFactor),
                                                 &errstr, errstr.count) else {
                return .failure(KafkaError(.admin, reason: "topic \(spec.name): \(errstr.text)",
                                           hint: "check the partitions and replication factor in streams/topics.yaml"))
            }
            newTopics.append(nt)
            for (key, value) in spec.config.sorted(by: { $0.key < $1.key }) {
                if let error = KafkaError.from(rd_kafka_NewTopic_set_config(nt, key, value), .admin,
                                               "topic \(spec.name) config \(key)") {
                    return .failure(error)
                }
            }
        }
        let queue = rd_kafka_queue_new(rk.pointer)
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(rk.pointer, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMs, &errstr, errstr.count)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeoutMs, &errstr, errstr.count)
        newTopics.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_CreateTopics(rk.pointer, buffer.baseAddress, buffer.count, options, queue)
        }
        // The admin request has its own timeout; wait a little longer for its result event.
        guard let event = rd_kafka_queue_poll(queue, timeoutMs + 5000) else {
            return .failure(KafkaError(.timeout, code: .timedOut, reason: "CreateTopics got no answer",
                                       hint: "check that the brokers are reachable and support the Admin API"))
        }
        defer { rd_kafka_event_destroy(event) }
        if let error = KafkaError.from(rd_kafka_event_error(event), .admin, "CreateTopics") {
            return .failure(error.code == .timedOut
                ? KafkaError(.timeout, code: .timedOut, reason: error.reason,
                             hint: "the brokers did not answer CreateTopics in time; create the topics by hand")
                : error)
        }
        var created: [String] = []
        var count = 0
        let result = rd_kafka_event_CreateTopics_result(event)
        guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return .success([]) }
        for i in 0..<count {
            let r = results[i]
            let name = String(cString: rd_kafka_topic_result_name(r))
            let err = rd_kafka_topic_result_error(r)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                created.append(name)
            } else if err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
                let msg = rd_kafka_topic_result_error_string(r).map { String(cString: $0) } ?? ""
                return .failure(KafkaError(.admin, code: KafkaErrorCode(err), reason: "create topic \(name): \(msg)"))
            }
        }
        return .success(created)
    }
}
