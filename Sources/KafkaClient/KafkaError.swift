import CRdKafka

// MARK: - KafkaError

/// The one error type of the Kafka layer. It wraps librdkafka's codes (never leaks them as C types),
/// says where it came from, and carries a hint that tells the operator what to do.
public struct KafkaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Where in the client the error arose.
    public enum Kind: String, Sendable {
        case config, client, produce, delivery, consume, commit, rebalance, seek, topic, admin, embeddedBroker, timeout,
            closed
    }

    /// Where in the client the error arose.
    public let kind: Kind
    /// librdkafka's error code (`rd_kafka_resp_err_t`), when the error came from librdkafka.
    public let code: KafkaErrorCode?
    /// What went wrong, with secrets already redacted.
    public let reason: String
    /// What to do about it.
    public let hint: String

    /// Creates an error; `hint` defaults to advice derived from `code`.
    public init(_ kind: Kind, code: KafkaErrorCode? = nil, reason: String, hint: String? = nil) {
        self.kind = kind
        self.code = code
        self.reason = reason
        self.hint = hint ?? code.map(KafkaError.hint(for:)) ?? ""
    }

    /// Whether retrying the same operation later can succeed (librdkafka's view, or a timeout).
    public var isRetriable: Bool {
        if kind == .timeout { return true }
        guard let code else { return false }
        return code.isRetriable
    }

    public var description: String {
        var text = "kafka \(kind.rawValue) error"
        if let code { text += " [\(code.name)]" }
        text += ": \(reason)"
        if !hint.isEmpty { text += " — \(hint)" }
        return text
    }

    // MARK: Hints

    static func hint(for code: KafkaErrorCode) -> String {
        switch code {
        case .allBrokersDown, .transport, .resolve:
            return "check bootstrap.servers and that the brokers are reachable from this host"
        case .messageTimedOut:
            return "the broker was unreachable for longer than message.timeout.ms; fix the broker or raise the timeout"
        case .queueFull:
            return "the producer queue is full; slow down or raise queue.buffering.max.messages"
        case .unknownTopicOrPartition, .unknownTopic, .unknownPartition:
            return "create the topic first (streams/topics.yaml lists distilld's topics)"
        case .messageSizeTooLarge:
            return "the record exceeds message.max.bytes on the client or broker"
        case .saslAuthenticationFailed, .authentication:
            return "check sasl.mechanisms, sasl.username and sasl.password"
        case .ssl:
            return "check the ssl.* paths and that the broker's certificate is trusted"
        case .topicAuthorizationFailed, .groupAuthorizationFailed:
            return "grant this principal the ACLs it needs on the topic or group"
        case .timedOut, .requestTimedOut:
            return "the broker did not answer in time; check broker health and network latency"
        case .illegalGeneration, .unknownMemberID, .rebalanceInProgress:
            return "the consumer group rebalanced; the operation can be retried after the new assignment"
        case .invalidArgument:
            return "an argument is out of range; check the topic, partition and offset"
        case .fenced:
            return "another producer with the same transactional id took over"
        default:
            return "see librdkafka's error \(code.name)"
        }
    }
}

// MARK: - KafkaErrorCode

/// A librdkafka error code (`rd_kafka_resp_err_t`) as a Swift value. Used to inspect errors and to inject them
/// into the embedded broker.
public struct KafkaErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    init(_ err: rd_kafka_resp_err_t) { self.rawValue = err.rawValue }

    var native: rd_kafka_resp_err_t { rd_kafka_resp_err_t(rawValue: rawValue) }

    /// librdkafka's symbolic name, e.g. `NOT_LEADER_FOR_PARTITION` or `_MSG_TIMED_OUT`.
    public var name: String { String(cString: rd_kafka_err2name(native)) }
    /// librdkafka's human description.
    public var message: String { String(cString: rd_kafka_err2str(native)) }
    public var description: String { name }

    /// Broker-side codes that clients retry by protocol; local transient conditions count too.
    public var isRetriable: Bool { Self.retriable.contains(self) }

    public static let noError = Self(RD_KAFKA_RESP_ERR_NO_ERROR)
    public static let allBrokersDown = Self(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
    public static let transport = Self(RD_KAFKA_RESP_ERR__TRANSPORT)
    public static let resolve = Self(RD_KAFKA_RESP_ERR__RESOLVE)
    public static let messageTimedOut = Self(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
    public static let timedOut = Self(RD_KAFKA_RESP_ERR__TIMED_OUT)
    public static let queueFull = Self(RD_KAFKA_RESP_ERR__QUEUE_FULL)
    public static let unknownTopic = Self(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
    public static let unknownPartition = Self(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
    public static let partitionEOF = Self(RD_KAFKA_RESP_ERR__PARTITION_EOF)
    public static let noOffset = Self(RD_KAFKA_RESP_ERR__NO_OFFSET)
    public static let purgeQueue = Self(RD_KAFKA_RESP_ERR__PURGE_QUEUE)
    public static let purgeInflight = Self(RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
    public static let invalidArgument = Self(RD_KAFKA_RESP_ERR__INVALID_ARG)
    public static let state = Self(RD_KAFKA_RESP_ERR__STATE)
    public static let authentication = Self(RD_KAFKA_RESP_ERR__AUTHENTICATION)
    public static let ssl = Self(RD_KAFKA_RESP_ERR__SSL)
    public static let fenced = Self(RD_KAFKA_RESP_ERR__FENCED)
    public static let unknownTopicOrPartition = Self(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    public static let leaderNotAvailable = Self(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
    public static let notLeaderForPartition = Self(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION)
    public static let requestTimedOut = Self(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT)
    public static let networkException = Self(RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION)
    public static let coordinatorNotAvailable = Self(RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE)
    public static let notCoordinator = Self(RD_KAFKA_RESP_ERR_NOT_COORDINATOR)
    public static let coordinatorLoadInProgress = Self(RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS)
    public static let notEnoughReplicas = Self(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS)
    public static let messageSizeTooLarge = Self(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
    public static let illegalGeneration = Self(RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION)
    public static let unknownMemberID = Self(RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID)
    public static let rebalanceInProgress = Self(RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS)
    public static let topicAuthorizationFailed = Self(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
    public static let groupAuthorizationFailed = Self(RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED)
    public static let saslAuthenticationFailed = Self(RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED)
    public static let topicAlreadyExists = Self(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)

    static let retriable: Set<Self> = [
        .transport, .allBrokersDown, .timedOut, .queueFull, .leaderNotAvailable, .notLeaderForPartition,
        .requestTimedOut, .networkException, .coordinatorNotAvailable, .notCoordinator, .coordinatorLoadInProgress,
        .notEnoughReplicas, .rebalanceInProgress,
    ]
}

extension KafkaError {
    /// Wraps a librdkafka code; returns nil for `NO_ERROR`.
    static func from(_ err: rd_kafka_resp_err_t, _ kind: Kind, _ context: String) -> KafkaError? {
        guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        let code = KafkaErrorCode(err)
        return KafkaError(kind, code: code, reason: "\(context): \(code.message)")
    }

    /// Wraps an `rd_kafka_error_t`, destroying it.
    static func consuming(_ error: OpaquePointer, _ kind: Kind, _ context: String) -> KafkaError {
        defer { rd_kafka_error_destroy(error) }
        let code = KafkaErrorCode(rd_kafka_error_code(error))
        return KafkaError(kind, code: code, reason: "\(context): \(String(cString: rd_kafka_error_string(error)))")
    }
}
