import CRdKafka
import Dispatch
import Synchronization

// MARK: - FetchWakeup

/// Wakes a consumer's (or partition reader's) broker threads as the application drains their prefetch queue.
///
/// librdkafka 2.0.2 stops fetching a partition while the consumer's queue holds `queued.max.messages.kbytes`
/// (or `queued.min.messages`), and decides again only when its broker thread next wakes: on an op, on I/O, or
/// after 1 s. Draining the queue wakes nothing, so a backlogged consumer whose queue is smaller than a second of
/// consumption idles for the rest of each second (librdkafka 2.2 added `fetch.queue.backoff.ms` for this). Each
/// time the application has taken half a queue's worth in full batches, this sends one ListOffsets request to every
/// leader of the partitions read, on a queue of its own and at most one at a time; the request is an op on each broker
/// thread, which then serves its partitions and fetches again. The answer is not used.
///
/// Only full batches count (or one that alone took half a queue): a batch cut short found the queue empty, so the
/// queue was not at its limit and the broker threads are fetching. A consumer that keeps up therefore sends none, and
/// adds no request to its brokers' load.
final class FetchWakeup: Sendable {
    /// Bytes of payload taken since the last wake-up that call for the next one: half of `queued.max.messages.kbytes`
    /// (librdkafka counts a kilobyte as 1,000 bytes there).
    let byteThreshold: Int
    /// Messages taken since the last wake-up that call for the next one: half of `queued.min.messages`.
    let messageThreshold: Int
    private let taken = Mutex<(bytes: Int, messages: Int)>((0, 0))
    private let inFlight = Atomic<Bool>(false)
    private let sent = Atomic<Int>(0)
    private let queue = DispatchQueue(label: "distilld.kafka.consumer.wakeup")

    /// A 16 MB prefetch queue instead of librdkafka's 64 MB, for consumers and readers unless the properties say
    /// otherwise: the wake-up keeps a backlogged client fetching through a small queue, and the difference is the
    /// daemon's RSS (bench: 221-239 against 166-173 MB peak).
    static let queueDefaults = ["queued.max.messages.kbytes": "16384"]

    /// Thresholds from the client's effective configuration.
    init(_ rk: RdKafkaHandle) {
        let conf = rd_kafka_conf(rk.pointer)
        func value(_ name: String, default fallback: Int) -> Int {
            var buffer = [CChar](repeating: 0, count: 64)
            var size = buffer.count
            guard rd_kafka_conf_get(conf, name, &buffer, &size) == RD_KAFKA_CONF_OK else { return fallback }
            return Int(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
                ?? fallback
        }
        byteThreshold = max(1, value("queued.max.messages.kbytes", default: 65_536) * 1_000 / 2)
        messageThreshold = max(1, value("queued.min.messages", default: 100_000) / 2)
    }

    /// Wake-ups sent so far.
    var wakeups: Int { sent.load(ordering: .relaxed) }

    /// Counts what a poll took (`full`: as many records as it asked for); sends a wake-up when half a queue has gone
    /// in full batches since the last one. `partitions` (the partitions read) is asked only then, on the caller's
    /// thread.
    func took(bytes: Int, messages: Int, full: Bool, from rk: RdKafkaHandle,
              partitions: () -> [TopicPartition]) {
        let due = taken.withLock { t -> Bool in
            guard full || bytes >= byteThreshold || messages >= messageThreshold else {
                t = (0, 0)
                return false
            }
            t.bytes &+= bytes
            t.messages &+= messages
            guard t.bytes >= byteThreshold || t.messages >= messageThreshold else { return false }
            // One in flight: the count goes on, and the poll after it ends sends the next.
            guard !inFlight.exchange(true, ordering: .acquiringAndReleasing) else { return false }
            t = (0, 0)
            return true
        }
        guard due else { return }
        sent.add(1, ordering: .relaxed)
        let read = partitions()
        queue.async {
            defer { self.inFlight.store(false, ordering: .releasing) }
            if !read.isEmpty { _ = ClusterQueries.highWatermarks(rk, read, timeoutMs: 1_000) }
        }
    }
}
