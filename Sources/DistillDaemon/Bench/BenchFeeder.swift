import DistillWire
import Dispatch
import Foundation
import KafkaClient
import Synchronization

// MARK: - BenchFeeder

/// Produces a synthetic stream into a `samples` topic on a dedicated thread (generating records is CPU work that
/// must not occupy Swift's cooperative pool, where the pipeline runs).
///
/// Sample `i` goes to partition `i mod P`, keyed by its id; a late label goes to the same partition of `labels`
/// 64 samples later. Probes (``BenchProbe``) are put behind a sample in its partition: every `probeEvery` samples
/// (a prime, so they visit every partition), and after the last sample one end probe per partition.
///
/// Flow control: the embedded broker keeps only about 5 MiB per partition and silently drops older data, so the
/// feeder never runs more than `maxAhead` samples ahead of what the consumer has processed.
final class BenchFeeder: Sendable {
    /// What to produce.
    struct Plan: Sendable {
        /// Index of the first sample (ids and event times continue across plans).
        var first: Int
        var count: Int
        /// Samples per second; nil: as fast as flow control allows.
        var rate: Double?
        /// Produced minus processed never exceeds this.
        var maxAhead: Int
        /// A probe after every this many samples.
        var probeEvery: Int
        /// Whether the probes' latencies are recorded.
        var timed: Bool
        /// Whether one end probe per partition follows the last sample.
        var endProbes: Bool
    }

    /// What was produced.
    struct Outcome: Sendable {
        var samples = 0
        var labels = 0
        var probes = 0
        var seconds = 0.0
        /// Time spent waiting for the consumer (flow control), s.
        var waitedSeconds = 0.0
    }

    private let producer: KafkaProducer
    private let stream: SyntheticStream
    private let topics: BenchTopics
    /// The format of the samples and late labels produced (probes are always JSON: undecodable as protobuf, they
    /// are dead-lettered there too).
    private let format: RecordFormat
    private let failures = FailureCount()

    init(producer: KafkaProducer, stream: SyntheticStream, topics: BenchTopics, format: RecordFormat = .json) {
        self.producer = producer
        self.stream = stream
        self.topics = topics
        self.format = format
    }

    /// Delivery failures reported so far.
    var deliveryFailures: Int { failures.value.load(ordering: .relaxed) }

    /// Produces `plan` on a new thread; `processed` tells how many samples of this topic the consumer has
    /// processed (in total, over all plans).
    func feed(_ plan: Plan, processed: @escaping @Sendable () -> Int) async -> Outcome {
        await withCheckedContinuation { continuation in
            let thread = Thread { [self] in continuation.resume(returning: run(plan, processed: processed)) }
            thread.name = "distilld-bench-feeder"
            thread.start()
        }
    }

    /// A late label follows its sample this many samples later (the engine-only phase schedules them alike).
    static let lateLabelDelay = 64

    private func run(_ plan: Plan, processed: () -> Int) -> Outcome {
        var outcome = Outcome()
        let partitions = topics.partitions
        var buffer: [UInt8] = []
        buffer.reserveCapacity(8192)
        var pending: [(due: Int, index: Int, label: Int)] = []
        var head = 0
        let started = DispatchTime.now().uptimeNanoseconds
        for j in 0..<plan.count {
            let i = plan.first + j
            if j & 127 == 0 {
                let waitStart = DispatchTime.now().uptimeNanoseconds
                while i - processed() > plan.maxAhead { usleep(500) }
                outcome.waitedSeconds += Double(DispatchTime.now().uptimeNanoseconds - waitStart) / 1e9
            }
            if let rate = plan.rate {
                let due = started + UInt64(Double(j) / rate * 1e9)
                while true {
                    let now = DispatchTime.now().uptimeNanoseconds
                    if now >= due { break }
                    usleep(UInt32(min((due - now) / 1000, 1000)))
                }
            }
            buffer.removeAll(keepingCapacity: true)
            let fate = stream.sample(i, format: format, into: &buffer)
            let partition = Int32(i % partitions)
            send(ProducerRecord(topic: topics.samples, partition: partition, key: SyntheticStream.key(i),
                                value: buffer))
            outcome.samples += 1
            if case .late(let label) = fate { pending.append((j + Self.lateLabelDelay, i, label)) }
            while head < pending.count, pending[head].due <= j {
                sendLabel(pending[head].index, pending[head].label)
                outcome.labels += 1
                head += 1
            }
            if head > 4096 {
                pending.removeFirst(head)
                head = 0
            }
            if (j + 1) % plan.probeEvery == 0 {
                sendProbe(BenchProbe(producedBefore: i + 1, partition: partition,
                                     sentNanos: DispatchTime.now().uptimeNanoseconds, isEnd: false, timed: plan.timed))
                outcome.probes += 1
            }
        }
        while head < pending.count {
            sendLabel(pending[head].index, pending[head].label)
            outcome.labels += 1
            head += 1
        }
        let end = plan.first + plan.count
        for p in 0..<(plan.endProbes ? partitions : 0) {
            sendProbe(BenchProbe(producedBefore: end, partition: Int32(p),
                                 sentNanos: DispatchTime.now().uptimeNanoseconds, isEnd: true, timed: false))
            outcome.probes += 1
        }
        outcome.seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        return outcome
    }

    private func sendLabel(_ index: Int, _ label: Int) {
        send(ProducerRecord(topic: topics.labels, partition: Int32(index % topics.partitions),
                            key: SyntheticStream.key(index),
                            value: stream.lateLabel(index, label: label, format: format)))
    }

    private func sendProbe(_ probe: BenchProbe) {
        send(ProducerRecord(topic: topics.samples, partition: probe.partition, key: Array("bench-probe".utf8),
                            value: probe.bytes))
    }

    /// Queues a record, waiting while librdkafka's local queue is full.
    private func send(_ record: ProducerRecord) {
        let failures = self.failures
        while true {
            do {
                try producer.send(record) { result in
                    if case .failure = result { failures.value.add(1, ordering: .relaxed) }
                }
                return
            } catch where error.code == .queueFull {
                usleep(1000)
            } catch {
                failures.value.add(1, ordering: .relaxed)
                return
            }
        }
    }
}

/// Delivery failures, counted on librdkafka's callback thread.
final class FailureCount: Sendable {
    let value = Atomic<Int>(0)
}
