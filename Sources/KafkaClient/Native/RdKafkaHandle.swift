import CRdKafka
import Logging
import Synchronization

// MARK: - ClientContext

/// What librdkafka's C callbacks need from Swift. It reaches them through the handle's `opaque` pointer.
/// `@unchecked Sendable`: the stored lets are immutable, and the mutable parts sit behind a `Mutex`.
final class ClientContext: @unchecked Sendable {
    let logger: Logger
    let properties: KafkaProperties
    /// Events raised inside callbacks (rebalances, client errors) until the owner drains them.
    let pendingEvents = Mutex<[ConsumerEvent]>([])
    /// Where partitions start when the group assigns them (a restored checkpoint's offsets), instead of the
    /// committed offsets.
    let startOffsets = Mutex<[TopicPartition: Int64]>([:])
    /// Runs inside the rebalance callback before partitions are given up, so the group waits for it.
    let beforeRevoke = Mutex<(@Sendable ([TopicPartition]) -> Void)?>(nil)
    /// Client-level errors (e.g. all brokers down) seen by `error_cb`, for tests and metrics.
    let clientErrors = Mutex<[KafkaError]>([])

    init(logger: Logger, properties: KafkaProperties) {
        self.logger = logger
        self.properties = properties
    }

    func drainEvents() -> [ConsumerEvent] {
        pendingEvents.withLock { events in
            defer { events.removeAll(keepingCapacity: true) }
            return events
        }
    }

    static func from(_ rk: OpaquePointer?) -> ClientContext? {
        guard let rk, let opaque = rd_kafka_opaque(rk) else { return nil }
        return Unmanaged<ClientContext>.fromOpaque(opaque).takeUnretainedValue()
    }
}

// MARK: - RdKafkaHandle

/// Owns one `rd_kafka_t`. librdkafka's handle is thread-safe by contract, and the pointer never changes after
/// `init`, hence `@unchecked Sendable`. The context lives exactly as long as the handle.
final class RdKafkaHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    let context: ClientContext
    private let contextRef: Unmanaged<ClientContext>

    init(
        _ type: rd_kafka_type_t, properties: KafkaProperties, role: KafkaClientRole, logger: Logger,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws(KafkaError) {
        let conf = try NativeConf(properties, role: role)
        let context = ClientContext(logger: logger, properties: properties)
        let ref = Unmanaged.passRetained(context)
        rd_kafka_conf_set_opaque(conf.pointer, ref.toOpaque())
        rd_kafka_conf_set_log_cb(conf.pointer) { rk, level, facility, message in
            guard let context = ClientContext.from(rk) else { return }
            let text = context.properties.redact(message.map { String(cString: $0) } ?? "")
            let fac = facility.map { String(cString: $0) } ?? "?"
            // One `kafka:` map configures every client; a consumer-only property on a producer is expected.
            let expected = fac == "CONFWARN" && (text.contains("is a consumer property")
                || text.contains("is a producer property"))
            context.logger.log(level: expected ? .debug : RdKafkaHandle.logLevel(level), "librdkafka \(fac): \(text)")
        }
        rd_kafka_conf_set_error_cb(conf.pointer) { rk, err, reason, _ in
            guard let context = ClientContext.from(rk) else { return }
            let text = context.properties.redact(reason.map { String(cString: $0) } ?? "")
            let error = KafkaError(.client, code: KafkaErrorCode(rawValue: err), reason: text)
            context.clientErrors.withLock { $0.append(error) }
            context.logger.warning("kafka client error: \(error)")
        }
        configure(conf.pointer!)
        var errstr = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(type, conf.pointer, &errstr, errstr.count) else {
            ref.release()
            throw KafkaError(
                .config, reason: "invalid configuration for a \(role.rawValue): \(properties.redact(errstr.text))",
                hint: "fix the kafka: properties (see librdkafka 2.0.2's CONFIGURATION.md)")
        }
        _ = conf.release()  // rd_kafka_new owns it now
        self.pointer = rk
        self.context = context
        self.contextRef = ref
    }

    deinit {
        rd_kafka_destroy(pointer)
        contextRef.release()
    }

    /// The client name librdkafka assigned, e.g. `rdkafka#consumer-2`.
    var name: String { String(cString: rd_kafka_name(pointer)) }

    static func logLevel(_ syslog: Int32) -> Logger.Level {
        switch syslog {
        case ...3: return .error
        case 4: return .warning
        case 5, 6: return .info
        default: return .debug
        }
    }
}
