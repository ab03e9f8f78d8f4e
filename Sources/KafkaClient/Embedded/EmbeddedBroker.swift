import CRdKafka
import Logging

// MARK: - EmbeddedBroker

/// librdkafka's mock cluster: a Kafka-protocol broker in this process, on loopback, for zero-setup runs and
/// fault-injection tests. Other processes (kcat, other clients) can connect to `bootstrapServers`.
///
/// Limits (librdkafka 2.0.2): random ports, memory only, about 5 MiB kept per partition (oldest data dropped
/// silently), no compaction, transactions not honoured, Admin CreateTopics not answered.
/// `@unchecked Sendable`: the mock cluster API is thread-safe, and both pointers are fixed for the object's life.
public final class EmbeddedBroker: @unchecked Sendable {
    /// The dummy client that owns the cluster; the cluster dies with it.
    private let handle: RdKafkaHandle
    private let cluster: OpaquePointer
    /// The number of brokers; their ids are 1...brokerCount.
    public let brokerCount: Int
    /// `host:port,...` of the brokers, for `bootstrap.servers`.
    public let bootstrapServers: String

    /// Starts a cluster of `brokers` brokers.
    public init(brokers: Int = 1, logger: Logger = Logger(label: "distilld.broker")) throws(KafkaError) {
        guard (1...32).contains(brokers) else {
            throw KafkaError(.embeddedBroker, reason: "broker count \(brokers) is out of range",
                             hint: "use between 1 and 32 brokers")
        }
        // The dummy handle never connects anywhere; only errors from it are worth logging.
        handle = try RdKafkaHandle(
            RD_KAFKA_PRODUCER, properties: KafkaProperties(["log_level": "3"]), role: .producer,
            logger: logger)
        guard let cluster = rd_kafka_mock_cluster_new(handle.pointer, Int32(brokers)) else {
            throw KafkaError(.embeddedBroker, reason: "librdkafka could not start the mock cluster")
        }
        self.cluster = cluster
        self.brokerCount = brokers
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
    }

    /// The broker ids, for fault injection.
    public var brokerIDs: ClosedRange<Int32> { 1...Int32(brokerCount) }

    /// Properties that point a client at this cluster.
    public var clientProperties: KafkaProperties { KafkaProperties(["bootstrap.servers": bootstrapServers]) }

    // MARK: Topics

    /// Creates a topic. The replication factor is capped at the broker count.
    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws(KafkaError) {
        let rf = Int32(min(max(replicationFactor, 1), brokerCount))
        try check(rd_kafka_mock_topic_create(cluster, name, Int32(partitions), rf), "create topic \(name)")
    }

    /// Creates every topic in `specs` (their topic-level config does not apply to the mock cluster).
    public func createTopics(_ specs: [TopicSpec]) throws(KafkaError) {
        for spec in specs { try createTopic(spec.name, partitions: spec.partitions, replicationFactor: spec.replicationFactor) }
    }

    // MARK: Fault injection

    /// Takes a broker down: its connections close and it refuses new ones until `setBrokerUp`.
    public func setBrokerDown(_ broker: Int32) throws(KafkaError) {
        try check(rd_kafka_mock_broker_set_down(cluster, broker), "take broker \(broker) down")
    }

    /// Brings a broker back up.
    public func setBrokerUp(_ broker: Int32) throws(KafkaError) {
        try check(rd_kafka_mock_broker_set_up(cluster, broker), "bring broker \(broker) up")
    }

    /// Adds `milliseconds` of round-trip latency to every response of a broker.
    public func setLatency(broker: Int32, milliseconds: Int) throws(KafkaError) {
        try check(rd_kafka_mock_broker_set_rtt(cluster, broker, Int32(milliseconds)), "set broker \(broker) latency")
    }

    /// Makes `broker` the leader of a partition (a leader move mid-stream).
    public func moveLeader(topic: String, partition: Int32, to broker: Int32) throws(KafkaError) {
        try check(rd_kafka_mock_partition_set_leader(cluster, topic, partition, broker),
                  "move the leader of \(topic)[\(partition)] to broker \(broker)")
    }

    /// Makes the next requests of type `request` (on any broker) fail with `errors`, in order, one per request.
    public func failNextRequests(_ request: KafkaRequest, with errors: [KafkaErrorCode]) {
        let native = errors.map(\.native)
        native.withUnsafeBufferPointer { buffer in
            rd_kafka_mock_push_request_errors_array(cluster, request.rawValue, buffer.count, buffer.baseAddress)
        }
    }

    /// Drops any errors still queued for `request`.
    public func clearRequestErrors(_ request: KafkaRequest) {
        rd_kafka_mock_clear_request_errors(cluster, request.rawValue)
    }

    /// Makes every request for `topic` fail with `error` (or succeed again with `.noError`).
    public func setTopicError(_ topic: String, _ error: KafkaErrorCode) {
        rd_kafka_mock_topic_set_error(cluster, topic, error.native)
    }

    /// Makes `broker` the coordinator of consumer group `group` (moves the coordinator).
    public func setGroupCoordinator(_ group: String, broker: Int32) throws(KafkaError) {
        try check(rd_kafka_mock_coordinator_set(cluster, "group", group, broker), "move the coordinator of \(group)")
    }

    private func check(_ err: rd_kafka_resp_err_t, _ what: String) throws(KafkaError) {
        if let error = KafkaError.from(err, .embeddedBroker, what) { throw error }
    }
}

// MARK: - KafkaRequest

/// Kafka protocol request types (API keys), for fault injection. The public headers do not define them.
public struct KafkaRequest: RawRepresentable, Hashable, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    public static let produce = Self(rawValue: 0)
    public static let fetch = Self(rawValue: 1)
    public static let listOffsets = Self(rawValue: 2)
    public static let metadata = Self(rawValue: 3)
    public static let offsetCommit = Self(rawValue: 8)
    public static let offsetFetch = Self(rawValue: 9)
    public static let findCoordinator = Self(rawValue: 10)
    public static let joinGroup = Self(rawValue: 11)
    public static let heartbeat = Self(rawValue: 12)
    public static let leaveGroup = Self(rawValue: 13)
    public static let syncGroup = Self(rawValue: 14)
    public static let initProducerID = Self(rawValue: 22)
}
