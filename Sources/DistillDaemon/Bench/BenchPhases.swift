import DistillCore
import DistillWire
import Dispatch
import Foundation
import KafkaClient
import Logging
import ServiceLifecycle
import Synchronization

// MARK: - ConsumePhase

/// The raw consume baseline (`decode == false`) and `decode` mode: a consume loop with the pipeline's librdkafka
/// settings and batch size (2,048 records per poll), counting records, and in `decode` mode decoding each with
/// the daemon's decoder of `format` (`SampleDecoder` or `ProtobufSampleDecoder`) into one reused sample.
struct ConsumePhase {
    let context: Context
    let topics: BenchTopics
    let name: String
    let decode: Bool
    /// The format of the records produced (and decoded).
    var format: RecordFormat = .json

    func run(latency: Bool) async throws -> BenchReport.RunResult {
        let o = context.options
        let n = o.samples
        let producer = try context.makeProducer()
        let feeder = BenchFeeder(producer: producer, stream: context.stream, topics: topics, format: format)
        let tracker = ProbeTracker(partitions: o.partitions, rssEvery: o.rssEvery)
        let preload = min(n, context.maxAhead)
        _ = await feeder.feed(.init(first: 0, count: preload, rate: nil, maxAhead: .max,
                                    probeEvery: Context.throughputProbeEvery, timed: false, endProbes: preload == n),
                              processed: { 0 })
        BenchMemory.resetPeak()
        let startRSS = Context.rssMegabytes
        let groupID = "bench-\(topics.samples)-\(UUID().uuidString.prefix(8))"
        let properties = context.kafka.properties.merging(KafkaProperties(context.consumerProperties))
        let logger = context.logger
        let samplesTopic = topics.samples
        let makeConsumer: @Sendable () throws -> KafkaConsumer = {
            let consumer = try KafkaConsumer(groupID: groupID, properties: properties, logger: logger)
            try consumer.subscribe([samplesTopic])
            return consumer
        }
        let state = LoopState()
        let decoder = decode ? RecordDecoder(format: format, classes: o.classes, features: o.features) : nil
        let affinity = context.affinity
        let loop = Task {
            try await Self.loop(pinnedTo: affinity, makeConsumer: makeConsumer, decoder: decoder, classes: o.classes,
                                state: state, tracker: tracker)
        }
        var waited = 0.0
        var latencyResult: BenchReport.Latency?
        var produced = n
        do {
            let rest = n - preload
            let feed = Task {
                rest == 0 ? BenchFeeder.Outcome() : await feeder.feed(
                    .init(first: preload, count: rest, rate: nil, maxAhead: context.maxAhead,
                          probeEvery: Context.throughputProbeEvery, timed: false, endProbes: true),
                    processed: { tracker.processedEverywhere })
            }
            try await waitUntil(what: name, progress: { tracker.processed }, failure: { state.failure }) {
                tracker.completed(n) != nil
            }
            waited = await feed.value.waitedSeconds
            let seconds = Context.seconds(from: state.assignedAt, to: tracker.completed(n)!)
            if latency {
                let rate = o.latencyRate ?? Double(n) / seconds / 2
                let plan = context.latencyPlan(first: n, rate: rate)
                produced += plan.count
                let started = DispatchTime.now().uptimeNanoseconds
                let phase = Task { await feeder.feed(plan, processed: { tracker.processedEverywhere }) }
                try await waitUntil(what: "\(name) latency", progress: { tracker.processed },
                                    failure: { state.failure }) { tracker.completed(n + plan.count) != nil }
                _ = await phase.value
                let phaseSeconds = Context.seconds(from: started, to: tracker.completed(n + plan.count)!)
                let achieved = Double(plan.count) / phaseSeconds
                latencyResult = tracker.latency(
                    measures: "from the producer's send call to the consume loop reaching the probe (after decoding "
                        + "every earlier record of its partition)", rate: rate, achieved: achieved)
            }
        } catch {
            state.stop()
            if let consumer = try? await loop.value { await consumer.close() }
            await producer.close()
            throw error
        }
        let peak = BenchMemory.peakBytes.map { Double($0) / 1e6 }
        tracker.finalRSS(samples: state.samples)
        state.stop()
        let consumer = try await loop.value
        await consumer.close()
        await producer.close()
        let seconds = Context.seconds(from: state.assignedAt, to: tracker.completed(n)!)
        return BenchReport.RunResult(
            name: name, produced: produced, processed: decode ? state.decoded : state.samples,
            samplesPerSecond: Double(n) / seconds, seconds: seconds, vsRawConsume: nil, vsJSONDecoder: nil,
            preloaded: preload == n, producerWaitedSeconds: waited, latency: latencyResult, startRSSMegabytes: startRSS,
            peakRSSMegabytes: peak, rss: tracker.rss, outputs: [:], unexpectedDeadLetters: 0)
    }

    /// Polls until stopped on a thread of its own: counts samples (decoding them when there is a decoder) and hands
    /// probes to `tracker`. With `affinity`, the thread is pinned to the pipeline's CPU before it creates the
    /// consumer, so librdkafka's threads start there too (one core, as the daemon gets). Returns the consumer to
    /// close; a failure is in `state`.
    private static func loop(
        pinnedTo affinity: BenchAffinity?, makeConsumer: @escaping @Sendable () throws -> KafkaConsumer,
        decoder: RecordDecoder?, classes: Int, state: LoopState, tracker: ProbeTracker
    ) async throws -> KafkaConsumer {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<KafkaConsumer, any Error>) in
            let thread = Thread {
                let consumer: KafkaConsumer
                do {
                    try affinity?.pinCurrentThread()
                    consumer = try makeConsumer()
                } catch {
                    state.fail(error)
                    continuation.resume(throwing: error)
                    return
                }
                var counter = BatchCounter(decoder: decoder, classes: classes)
                do {
                    while !state.stopped {
                        counter.count(try consumer.pollOnThisThread(maxMessages: 2048, timeout: .milliseconds(100)),
                                      state: state, tracker: tracker)
                    }
                } catch {
                    state.fail(error)
                }
                continuation.resume(returning: consumer)
            }
            thread.name = "bench-consume"
            thread.start()
        }
    }
}

/// What a consume loop counts: samples, decoded samples (into one reused sample), and the probes among them.
private struct BatchCounter {
    let decoder: RecordDecoder?
    var sample: DistillSample
    var samples = 0
    var decoded = 0

    init(decoder: RecordDecoder?, classes: Int) {
        self.decoder = decoder
        sample = DistillSample(classes: classes)
    }

    mutating func count(_ batch: ConsumerBatch, state: LoopState, tracker: ProbeTracker) {
        for event in batch.events {
            switch event {
            case .assigned:
                state.markAssigned()
            case .message(let m):
                if BenchProbe.looksLikeProbe(m.value) {
                    state.publish(samples: samples, decoded: decoded)
                    tracker.counted(samples)
                    if let probe = BenchProbe(m.value) {
                        tracker.saw(probe, at: DispatchTime.now().uptimeNanoseconds)
                    }
                    continue
                }
                samples += 1
                if let decoder {
                    do {
                        try decoder.decode(m.value, into: &sample)
                        decoded += 1
                    } catch {}
                }
            default:
                break
            }
        }
        state.publish(samples: samples, decoded: decoded)
        tracker.counted(samples)
    }
}

/// A consume loop's or a pipeline's progress, shared with the driver.
final class LoopState: Sendable {
    private let assigned = Atomic<UInt64>(0)
    private let stopFlag = Atomic<Bool>(false)
    private let counts = Mutex((samples: 0, decoded: 0))
    private let error = Mutex<(any Error)?>(nil)

    /// The first partition assignment, `DispatchTime` ns (0: none yet).
    var assignedAt: UInt64 { assigned.load(ordering: .acquiring) }
    func markAssigned() {
        let now = DispatchTime.now().uptimeNanoseconds
        _ = assigned.compareExchange(expected: 0, desired: now, ordering: .acquiringAndReleasing)
    }

    var stopped: Bool { stopFlag.load(ordering: .acquiring) }
    func stop() { stopFlag.store(true, ordering: .releasing) }

    var samples: Int { counts.withLock { $0.samples } }
    var decoded: Int { counts.withLock { $0.decoded } }
    func publish(samples: Int, decoded: Int) { counts.withLock { $0 = (samples, decoded) } }

    var failure: (any Error)? { error.withLock { $0 } }
    func fail(_ e: any Error) { error.withLock { $0 = $0 ?? e } }
}

// MARK: - PipelinePhase

/// `monitor` and `full`: the daemon's own `DistillService` (its `PipelineRunner` and `DistillEngine`) consuming the
/// generated topics (in the run's format, `topics.formats`) and publishing to the generated output topics; a
/// consumer of the output topics reads the probes' dead letters back.
struct PipelinePhase {
    let context: Context
    let topics: BenchTopics
    let run: BenchRun

    func run() async throws -> BenchReport.RunResult {
        let o = context.options
        let n = o.samples
        let stateDirectory = (context.directory as NSString).appendingPathComponent("state-\(run.slug)")
        let config = try DistillConfig.parse(configYAML(stateDirectory: stateDirectory), file: "<bench \(run)>")
        let producer = try context.makeProducer()
        for (key, value) in context.stream.teacherRecords() {
            _ = try await producer.send(ProducerRecord(topic: topics.teachers, key: Array(key.utf8), value: value))
        }
        let feeder = BenchFeeder(producer: producer, stream: context.stream, topics: topics, format: run.format)
        let daemon: any BenchDaemon
        switch o.pipeline {
        case .inProcess:
            daemon = InProcessDaemon(config: config, logger: context.logger)
        case .childProcess(let executable):
            daemon = try ChildDaemon(executable: executable, yaml: configYAML(stateDirectory: stateDirectory),
                                     directory: context.directory, name: "daemon-\(run.slug)",
                                     affinity: context.affinity)
        }
        let tracker = ProbeTracker(partitions: o.partitions, rssEvery: o.rssEvery, rss: { daemon.rssMegabytes })
        let preload = min(n, context.maxAhead)
        _ = await feeder.feed(.init(first: 0, count: preload, rate: nil, maxAhead: .max,
                                    probeEvery: Context.throughputProbeEvery, timed: false, endProbes: preload == n),
                              processed: { 0 })

        let watcher = try PartitionReader(
            properties: context.kafka.properties.merging(KafkaProperties(context.consumerProperties)),
            logger: context.logger)
        var starts: [TopicPartition: Int64] = [:]
        for spec in topics.specs where topics.outputs.contains(spec.name) {
            for p in 0..<spec.partitions { starts[TopicPartition(spec.name, Int32(p))] = KafkaOffset.beginning }
        }
        try await watcher.assign(starts)
        let state = LoopState()
        try daemon.start(assigned: { state.markAssigned() })
        let startRSS = daemon.rssMegabytes
        let prefix = "bench.\(run.slug)."
        let deadLetter = topics.deadLetter
        let watch = Task {
            while !state.stopped {
                let batch = try await watcher.poll(maxMessages: 4096, timeout: .milliseconds(20))
                let now = DispatchTime.now().uptimeNanoseconds
                for m in batch.messages {
                    let short = String(m.topic.dropFirst(prefix.count))
                    if m.topic == deadLetter, let probe = BenchProbe(m.value) {
                        tracker.saw(probe, at: now)
                        tracker.output(topic: "probes", unexpected: false)
                    } else {
                        tracker.output(topic: short, unexpected: m.topic == deadLetter)
                    }
                }
            }
        }

        var waited = 0.0
        var latencyResult: BenchReport.Latency?
        var produced = n
        do {
            let rest = n - preload
            let feed = Task {
                rest == 0 ? BenchFeeder.Outcome() : await feeder.feed(
                    .init(first: preload, count: rest, rate: nil, maxAhead: context.maxAhead,
                          probeEvery: Context.throughputProbeEvery, timed: false, endProbes: true),
                    processed: { tracker.processedEverywhere })
            }
            try await waitUntil(what: "\(run)", progress: { tracker.processed },
                                failure: { state.failure ?? daemon.failure }) {
                tracker.completed(n) != nil
            }
            waited = await feed.value.waitedSeconds
            let seconds = Context.seconds(from: state.assignedAt, to: tracker.completed(n)!)
            if o.latencySeconds > 0 {
                let rate = o.latencyRate ?? Double(n) / seconds / 2
                let plan = context.latencyPlan(first: n, rate: rate)
                produced += plan.count
                let phaseStartRSS = daemon.rssMegabytes
                let measuresPeak = daemon.startPhasePeak()
                let started = DispatchTime.now().uptimeNanoseconds
                let cpuBefore = CPUTimes.read()
                let phase = Task { await feeder.feed(plan, processed: { tracker.processedEverywhere }) }
                try await waitUntil(what: "\(run) latency", progress: { tracker.processed },
                                    failure: { state.failure ?? daemon.failure }) {
                    tracker.completed(n + plan.count) != nil
                }
                _ = await phase.value
                let phaseSeconds = Context.seconds(from: started, to: tracker.completed(n + plan.count)!)
                let achieved = Double(plan.count) / phaseSeconds
                latencyResult = tracker.latency(
                    measures: "from the producer's send call to reading the pipeline's output for the probe on the "
                        + "dead-letter topic (the probe follows samples in its partition, so every earlier sample "
                        + "there has been processed)", rate: rate, achieved: achieved)
                latencyResult?.cpuBusyPercent = CPUTimes.busyPercent(from: cpuBefore, to: CPUTimes.read())
                if measuresPeak {
                    try? await Task.sleep(for: .milliseconds(50))  // the sampler's next reading
                    latencyResult?.peakRSSMegabytes = daemon.phasePeakRSSMegabytes
                    latencyResult?.startRSSMegabytes = phaseStartRSS
                }
            }
        } catch {
            _ = try? await daemon.stop()
            state.stop()
            _ = try? await watch.value
            await watcher.close()
            await producer.close()
            throw error
        }
        tracker.finalRSS(samples: produced)
        let counters: [String: Int]
        do {
            counters = try await daemon.stop()
        } catch {
            state.stop()
            _ = try? await watch.value
            await watcher.close()
            await producer.close()
            throw BenchError.incomplete("\(run): \(error)")
        }
        // Read after the stop: the final checkpoint counts in the daemon's peak.
        let peak = daemon.peakRSSMegabytes
        state.stop()
        try await watch.value
        await watcher.close()
        await producer.close()
        try? FileManager.default.removeItem(atPath: stateDirectory)
        if let failure = state.failure { throw BenchError.incomplete("\(run): the pipeline stopped: \(failure)") }
        let seconds = Context.seconds(from: state.assignedAt, to: tracker.completed(n)!)
        var outputs = tracker.outputs
        outputs["probes"] = nil
        return BenchReport.RunResult(
            name: run.description, produced: produced,
            processed: counters["ingested"] ?? 0,
            samplesPerSecond: Double(n) / seconds, seconds: seconds, vsRawConsume: nil, vsJSONDecoder: nil,
            preloaded: preload == n, producerWaitedSeconds: waited, latency: latencyResult, startRSSMegabytes: startRSS,
            peakRSSMegabytes: peak, rss: tracker.rss, outputs: outputs, unexpectedDeadLetters: tracker.unexpected,
            daemonCounters: counters)
    }

    /// The value of one series in Prometheus text, 0 when absent.
    static func counter(_ text: String, _ series: String) -> Int {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Int(Double(line.dropFirst(series.count + 1).trimmingCharacters(in: .whitespaces)) ?? 0)
        }
        return 0
    }

    /// The daemon's configuration for this run: `config/distilld.yaml`'s windows, statistics, triggers and student,
    /// with the generated topics, the options' shape, and no HTTP endpoint.
    func configYAML(stateDirectory: String) -> String {
        let o = context.options
        let classes = context.stream.classNames
        let student: String
        switch run.student {
        case nil:
            student = "{enabled: false}"
        case let kind?:
            student = "{hidden: \(kind == .mlp ? "[64]" : "[]"), loss: hinton, alpha: 0.9, temperature: 2.0, "
                + "optimizer: adam, learning_rate: 0.003, batch_size: 16, ema_decay: 0.999, "
                + "checkpoint_every: 10000, gate_agreement: 0.95}"
        }
        return """
            brokers: "\(context.broker?.bootstrapServers ?? "127.0.0.1:9")"
            kafka: {\(context.consumerProperties.map { "\($0.key): \"\($0.value)\"" }.joined(separator: ", "))}
            consumer_group: bench-\(run.slug)-\(UUID().uuidString.prefix(8))
            topics: {samples: \(topics.samples), labels: \(topics.labels), teachers: \(topics.teachers), \
            alerts: \(topics.alerts), calibration: \(topics.calibration), windows: \(topics.windows), \
            students: \(topics.students), deadletter: \(topics.deadLetter), \
            formats: {samples: \(run.format.rawValue), labels: \(run.format.rawValue)}}
            model:
              classes: [\(classes.joined(separator: ", "))]
              rare_classes: [\(classes.last!)]
              features: \(o.features)
            statistics: {replicates: \(o.replicates), bins: 15, confidence_level: 0.95}
            windows:
              fast:  {size: 1h,  slide: 1m, grace: 1m}
              drift: {size: 14d, slide: 1h, grace: 5m}
            baselines: {quality_gap: 0.016}
            calibration: {ece_drift_threshold: 0.01, temperature_tolerance: 0.15, min_samples: 500}
            student: \(student)
            teacher: {strategy: latest}
            labels: {join_window: 10m, max_buffered: 50000}
            state: {dir: "\(stateDirectory)", interval: \(Int(o.stateIntervalSeconds * 1000))ms, on_corrupt: reset}
            http: {enabled: false}
            """
    }
}
