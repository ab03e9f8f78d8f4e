import CRdKafka
import Foundation
import Logging
import Synchronization

// MARK: - Records and reports

/// A record to produce.
public struct ProducerRecord: Sendable {
    public var topic: String
    /// The partition, or nil to let the partitioner choose from the key.
    public var partition: Int32?
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]
    /// Create time in ms since the epoch, or nil for "now".
    public var timestamp: Int64?

    public init(
        topic: String, partition: Int32? = nil, key: [UInt8]? = nil, value: [UInt8], headers: [KafkaHeader] = [],
        timestamp: Int64? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    /// A record whose key is UTF-8 text.
    public init(topic: String, key: String, value: [UInt8], headers: [KafkaHeader] = []) {
        self.init(topic: topic, key: Array(key.utf8), value: value, headers: headers)
    }
}

/// Where the broker stored a record.
public struct DeliveryReport: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
}

/// The outcome of one produced record, passed to its completion handler.
public typealias DeliveryResult = Result<DeliveryReport, KafkaError>

// MARK: - KafkaProducer

/// An idempotent librdkafka producer with per-message delivery results.
///
/// Delivery callbacks run on the producer's own poll thread, never on Swift's cooperative pool.
/// Idempotence is on unless the caller sets `enable.idempotence=false`: with it, librdkafka retries
/// without reordering or duplicating.
public final class KafkaProducer: Sendable {
    /// Defaults distilld applies unless the caller's properties say otherwise.
    public static let defaults: [String: String] = [
        "enable.idempotence": "true",
        "acks": "all",
        "linger.ms": "5",
        "compression.codec": "lz4",
    ]

    private let handle: RdKafkaHandle
    private let poller: PollThread
    private let closed = Atomic<Bool>(false)

    /// Creates a producer. `properties` are passed to librdkafka as they are, on top of `defaults`.
    public init(properties: KafkaProperties, logger: Logger = Logger(label: "distilld.kafka.producer")) throws(KafkaError) {
        let props = properties.withDefaults(Self.defaults)
        handle = try RdKafkaHandle(RD_KAFKA_PRODUCER, properties: props, role: .producer, logger: logger) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, _ in
                guard let message, let opaque = message.pointee._private else { return }
                let box = Unmanaged<DeliveryBox>.fromOpaque(opaque).takeRetainedValue()
                let topic = String(cString: rd_kafka_topic_name(message.pointee.rkt))
                if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                    box.complete(.success(DeliveryReport(
                        topic: topic, partition: message.pointee.partition, offset: message.pointee.offset)))
                } else {
                    let code = KafkaErrorCode(message.pointee.err)
                    box.complete(.failure(KafkaError(
                        .delivery, code: code, reason: "delivery to \(topic) failed: \(code.message)")))
                }
            }
        }
        let rk = handle
        poller = PollThread(name: "distilld-producer-poll") { rd_kafka_poll(rk.pointer, 100) }
    }

    deinit {
        // Fail whatever is still queued, so no completion handler is left waiting forever.
        poller.stop()
        rd_kafka_purge(handle.pointer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
        rd_kafka_flush(handle.pointer, 1000)
        rd_kafka_poll(handle.pointer, 0)
    }

    /// Messages not yet acknowledged (queued, in flight, or awaiting their delivery callback).
    public var outstanding: Int { Int(rd_kafka_outq_len(handle.pointer)) }

    /// Client errors reported by librdkafka's `error_cb` so far (e.g. all brokers down).
    public var clientErrors: [KafkaError] { handle.context.clientErrors.withLock { $0 } }

    /// Enqueues a record; `onDelivery` runs once, on the poll thread, with the broker's verdict.
    /// Throws at once if the record cannot be queued (queue full, unknown partition, closed producer).
    public func send(_ record: ProducerRecord, onDelivery: @escaping @Sendable (DeliveryResult) -> Void) throws(KafkaError) {
        guard !closed.load(ordering: .acquiring) else {
            throw KafkaError(.closed, reason: "the producer is closed", hint: "create a new producer")
        }
        let box = Unmanaged.passRetained(DeliveryBox(onDelivery))
        var headers: OpaquePointer? = nil
        if !record.headers.isEmpty {
            headers = rd_kafka_headers_new(record.headers.count)
            for header in record.headers {
                if let value = header.value {
                    value.withUnsafeBytes { v in
                        _ = rd_kafka_header_add(headers, header.name, -1, v.baseAddress, v.count)
                    }
                } else {
                    _ = rd_kafka_header_add(headers, header.name, -1, nil, 0)
                }
            }
        }
        let err = record.value.withUnsafeBytes { value in
            withOptionalBytes(record.key) { key in
                distilld_produce(
                    handle.pointer, record.topic, record.partition ?? RD_KAFKA_PARTITION_UA,
                    key?.baseAddress, key?.count ?? 0, value.baseAddress, value.count, headers,
                    record.timestamp ?? 0, box.toOpaque())
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            box.release()
            if let headers { rd_kafka_headers_destroy(headers) }
            throw KafkaError.from(err, .produce, "could not enqueue a record for \(record.topic)")!
        }
    }

    /// Sends a record and waits for the broker's acknowledgement. Waits (without blocking a thread) while the
    /// local queue is full.
    public func send(_ record: ProducerRecord) async throws(KafkaError) -> DeliveryReport {
        while true {
            do {
                let result: DeliveryResult = try await withCheckedThrowingContinuation { continuation in
                    do {
                        try send(record) { continuation.resume(returning: $0) }
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
                return try result.get()
            } catch let queueFull as KafkaError where queueFull.code == .queueFull {
                // Not enqueued: a cancelled caller gets the error rather than a retry loop that never suspends.
                do { try await Task.sleep(for: .milliseconds(2)) } catch { throw queueFull }
            } catch let error as KafkaError {
                throw error
            } catch {
                throw KafkaError(.produce, reason: "\(error)")
            }
        }
    }

    /// Waits until every queued record has its delivery result, or throws `.timeout` after `timeout`.
    public func flush(timeout: Duration) async throws(KafkaError) {
        let ms = timeout.milliseconds
        let rk = handle
        let err = await runBlocking { rd_kafka_flush(rk.pointer, ms) }
        if err == RD_KAFKA_RESP_ERR__TIMED_OUT {
            throw KafkaError(
                .timeout, code: .timedOut,
                reason: "\(outstanding) record(s) still unacknowledged after \(timeout)",
                hint: "the brokers may be down; their delivery results will report the failure")
        }
        if let error = KafkaError.from(err, .produce, "flush") { throw error }
    }

    /// Blocks the calling thread until every queued record has its delivery result or `timeout` passes; true when
    /// nothing is left. For callers that must not return before their outputs are durable (a rebalance callback).
    public func flushBlocking(timeout: Duration) -> Bool {
        rd_kafka_flush(handle.pointer, timeout.milliseconds) == RD_KAFKA_RESP_ERR_NO_ERROR
    }

    /// Flushes with a deadline, then fails whatever is left so every completion handler runs. Idempotent.
    public func close(timeout: Duration = .seconds(10)) async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        do {
            try await flush(timeout: timeout)
        } catch {
            handle.context.logger.warning("closing the producer: \(error); purging the rest")
            rd_kafka_purge(handle.pointer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
            let rk = handle
            _ = await runBlocking { rd_kafka_flush(rk.pointer, 1000) }
        }
    }
}

// MARK: - Helpers

/// Carries one record's completion handler through librdkafka's per-message opaque.
final class DeliveryBox: Sendable {
    let complete: @Sendable (DeliveryResult) -> Void
    init(_ complete: @escaping @Sendable (DeliveryResult) -> Void) { self.complete = complete }
}

func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBytes { body($0) }
}

/// Runs a blocking librdkafka call on a thread outside Swift's cooperative pool.
func runBlocking<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: work()) }
        thread.name = "distilld-kafka-blocking"
        thread.start()
    }
}

/// A dedicated thread that calls `body` in a loop until stopped. Used to serve librdkafka callbacks.
final class PollThread: Sendable {
    private let running = Atomic<Bool>(true)
    private let done = DispatchSemaphore(value: 0)
    private let body: @Sendable () -> Void

    init(name: String, body: @escaping @Sendable () -> Void) {
        self.body = body
        let thread = Thread { [self] in
            while running.load(ordering: .acquiring) { self.body() }
            done.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Stops the loop and waits for its current iteration to end.
    func stop() {
        if running.exchange(false, ordering: .acquiringAndReleasing) { done.wait() }
    }
}
