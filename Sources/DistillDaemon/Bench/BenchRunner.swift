import DistillCore
import DistillWire
import Dispatch
import Foundation
import Histogram
import KafkaClient
import Logging
import ServiceLifecycle
import Synchronization

// MARK: - BenchRunner

/// `distilld bench`: sizes a deployment by running the daemon's own pipeline over the embedded broker.
///
/// For each configuration it creates fresh topics, produces a synthetic stream (``SyntheticStream``) and measures:
/// 1. **Throughput.** As much of the stream as the broker keeps (about 3 MiB per partition) is produced before the
///    consumer starts; the rest is produced while it runs, never more than that far ahead. The rate is the
///    throughput phase's samples over the time from partition assignment to the moment the last end probe's
///    result was seen (for `monitor` and `full`: its dead letter read back from the dead-letter topic).
/// 2. **Latency**, at `--rate` (default: half the throughput just measured): probes (``BenchProbe``) ride in the
///    sample partitions, behind the samples. For `monitor` and `full`, a probe's latency runs from the producer's
///    `send` call to the moment the benchmark's consumer of the dead-letter topic reads the pipeline's dead letter
///    for it: producer batching, broker, the pipeline's fetch, every earlier sample of its partition being decoded,
///    windowed (and learned), the probe being rejected and published, broker, fetch. Alerts take the same path out.
///    For `decode`, it runs from `send` to the consume loop reaching the probe.
/// 3. **Memory**: peak RSS per configuration (`VmHWM`, reset at its start) and RSS every `--rss-every` samples.
///
/// Two baselines are measured in the same run: Foundation's `JSONDecoder` on the same records, and a consume-only
/// loop over the same broker with the same librdkafka settings and batch size as the pipeline.
public struct BenchRunner: Sendable {
    public var options: BenchOptions
    public var logger: Logger

    public init(options: BenchOptions, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs every configuration and returns the report.
    public func run() async throws -> BenchReport {
        try options.validate()
        let stream = SyntheticStream(shape: SyntheticStream.Shape(options), seed: options.seed)
        // Flow control is sized by the largest records measured (JSON's, when it is measured).
        let recordBytes = options.formats.map { stream.meanRecordBytes($0) }.max()!
        let directory = options.workDirectory ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("distilld-bench-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { if options.workDirectory == nil { try? FileManager.default.removeItem(atPath: directory) } }

        let runs = options.runs
        let rawTopics = options.formats.map {
            BenchTopics(run: $0 == .json ? "raw" : "raw-\($0.rawValue)", partitions: options.partitions)
        }
        let runTopics = runs.map { BenchTopics(run: $0.slug, partitions: options.partitions) }
        let broker = options.engineAlone ? nil : try BenchBroker(
            options.broker, topics: (rawTopics + runTopics).flatMap(\.specs), directory: directory, logger: logger)
        defer { broker?.stop() }
        // One core for the measured daemon and for the consume loops of raw consume and decode (`BenchAffinity`).
        var affinity: BenchAffinity?
        var pinning: String?
        if case .childProcess = options.pipeline, options.pinPipeline, !options.engineAlone {
            let (plan, why) = BenchAffinity.plan()
            affinity = plan
            pinning = plan?.description ?? "not pinned: \(why ?? "unknown")"
        } else if !options.engineAlone {
            pinning = "not pinned" + (options.pinPipeline ? " (the daemon runs in this process)" : " (--no-pin)")
        }
        let context = Context(options: options, stream: stream, broker: broker, affinity: affinity,
                              directory: directory,
                              recordBytes: recordBytes, logger: logger)

        say("JSONDecoder baseline: \(options.jsonDecoderSamples.grouped) records")
        let json = try jsonDecoderBaseline(stream)
        say(String(format: "  %@ samples/s", json.samplesPerSecond.grouped))

        if let affinity {
            try affinity.pinElsewhere()
            if let pid = broker?.pid { try affinity.pinElsewhere(pid: pid) }
            say("pinned: \(affinity.description)")
        }
        var rawBaselines: [RecordFormat: BenchReport.Baseline] = [:]
        for (format, topics) in zip(options.formats, rawTopics) where !options.engineAlone {
            let name = format == .json ? "raw consume" : "raw consume (\(format.rawValue))"
            say("\(name) baseline: \(options.samples.grouped) samples")
            let raw = try await ConsumePhase(context: context, topics: topics, name: name, decode: false,
                                             format: format).run(latency: false)
            rawBaselines[format] = BenchReport.Baseline(name: name, samples: raw.produced, seconds: raw.seconds,
                                                        samplesPerSecond: raw.samplesPerSecond)
            say(String(format: "  %@ samples/s", raw.samplesPerSecond.grouped))
        }
        let rawBaseline = rawBaselines[.json] ?? rawBaselines[options.formats[0]]

        var results: [BenchReport.RunResult] = []
        for (run, topics) in zip(runs, runTopics) {
            say("\(run): \(options.samples.grouped) samples")
            var result: BenchReport.RunResult
            if run.mode == .decode {
                result = try await ConsumePhase(context: context, topics: topics, name: run.description, decode: true,
                                                format: run.format).run(latency: options.latencySeconds > 0)
            } else {
                if options.engineOnly {
                    var engine = try EnginePhase(context: context, topics: topics, run: run).measure()
                    engine.vsJSONDecoder = engine.samplesPerSecond / json.samplesPerSecond
                    say(String(format: "  engine only: %@ samples/s", engine.samplesPerSecond.grouped))
                    results.append(engine)
                    if options.engineAlone { continue }
                }
                result = try await PipelinePhase(context: context, topics: topics, run: run).run()
            }
            // Against the raw consume of the same records, and against the same mode on JSON records.
            let raw = rawBaselines[run.format]!
            result.vsRawConsume = result.samplesPerSecond / raw.samplesPerSecond
            result.vsJSONDecoder = result.samplesPerSecond / json.samplesPerSecond
            if run.format != .json, let same = results.first(where: {
                $0.name == BenchRun(mode: run.mode, student: run.student, format: .json).description
            }) {
                result.vsJSONFormat = result.samplesPerSecond / same.samplesPerSecond
            }
            say(String(format: "  %@ samples/s (%.2f× raw consume)", result.samplesPerSecond.grouped,
                       result.vsRawConsume ?? 0)
                + (result.latency.map { String(format: ", p50 %.1f ms, p99 %.1f ms", $0.p50Milliseconds,
                                               $0.p99Milliseconds) } ?? ""))
            results.append(result)
        }

        let setup = BenchReport.Setup(
            samples: options.samples, features: options.features, classes: options.classes,
            teacherVersions: options.teacherVersions, slices: options.slices, labelRate: options.labelRate,
            lateLabelShare: options.lateLabelShare, replicates: options.replicates,
            windows: "fast 1h/1m, drift 14d/1h", eventRate: options.eventRate, partitions: options.partitions,
            stateIntervalSeconds: options.stateIntervalSeconds, compression: options.compression,
            meanRecordBytes: stream.meanRecordBytes(.json),
            meanProtobufRecordBytes: options.formats.contains(.protobuf) ? stream.meanRecordBytes(.protobuf) : nil,
            broker: options.engineAlone ? "none (--engine-alone)"
                : options.broker == .inProcess ? "in-process" : "child process",
            cpus: ProcessInfo.processInfo.activeProcessorCount, pinning: pinning)
        return BenchReport(
            setup: setup, jsonDecoder: json, rawConsume: rawBaselines[.json],
            protobufRawConsume: rawBaselines[.protobuf], runs: results,
            targets: Self.targets(results, raw: rawBaseline, options: options),
            processPeakRSSMegabytes: BenchMemory.peakBytes.map { Double($0) / 1e6 })
    }

    private func say(_ line: String) { options.progress?(line) }

    // MARK: JSONDecoder

    /// Foundation `JSONDecoder` into a `Codable` struct, over the same records (one pass after a warm-up).
    func jsonDecoderBaseline(_ stream: SyntheticStream) throws -> BenchReport.Baseline {
        let count = options.jsonDecoderSamples
        var buffer: [UInt8] = []
        let records: [Data] = (0..<count).map { i in
            buffer.removeAll(keepingCapacity: true)
            _ = stream.sample(i, into: &buffer)
            return Data(buffer)
        }
        let decoder = JSONDecoder()
        var sink = 0
        for data in records.prefix(200) {
            sink &+= try decoder.decode(CodableSampleRecord.self, from: data).teachers.count
        }
        let started = DispatchTime.now().uptimeNanoseconds
        for data in records { sink &+= try decoder.decode(CodableSampleRecord.self, from: data).teachers.count }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        precondition(sink > 0)
        return BenchReport.Baseline(name: "JSONDecoder", samples: count, seconds: seconds,
                                    samplesPerSecond: Double(count) / seconds)
    }

    // MARK: Targets

    /// Issue 6's targets, judged on this run.
    static func targets(_ runs: [BenchReport.RunResult], raw: BenchReport.Baseline?, options: BenchOptions)
        -> [BenchReport.Target] {
        var out: [BenchReport.Target] = []
        func rate(_ name: String, _ minimum: Double) {
            guard let r = runs.first(where: { $0.name == name }) else { return }
            out.append(.init(name: "\(name) samples/s", target: "≥ \(minimum.grouped)",
                             measured: "\(r.samplesPerSecond.grouped) "
                                 + "(\(Int((100 * r.samplesPerSecond / minimum).rounded())) %)",
                             met: r.samplesPerSecond >= minimum))
        }
        rate("decode", 350_000)
        rate("monitor", 250_000)
        if let m = runs.first(where: { $0.name == "monitor" }), let raw {
            let x = m.samplesPerSecond / raw.samplesPerSecond
            out.append(.init(name: "monitor vs raw consume", target: "≥ 0.25×",
                             measured: String(format: "%.2f×", x), met: x >= 0.25))
        }
        rate("full/softmax", 150_000)
        rate("full/mlp", 50_000)
        // `decode` runs (either format) measure the consume loop, not the daemon, and engine-only runs measure no
        // Kafka at all: no latency or RSS target.
        let pipelineRuns = runs.filter { !$0.name.hasPrefix("decode") && !$0.name.hasSuffix(EnginePhase.suffix) }
        for r in pipelineRuns {
            guard let l = r.latency else { continue }
            out.append(.init(name: "\(r.name) latency p99 at \(l.rate.grouped)/s", target: "< 50 ms",
                             measured: String(format: "%.1f ms", l.p99Milliseconds), met: l.p99Milliseconds < 50))
        }
        for r in pipelineRuns {
            guard let peak = r.peakRSSMegabytes else { continue }
            let stated = options.teacherVersions == 4 && options.classes == 16 && options.slices == 3
                && options.replicates == 64
            out.append(.init(
                name: "\(r.name) peak RSS" + (stated ? "" : " (target stated for 4 teachers, C=16, 3 slices, B=64)"),
                target: "< 200 MB", measured: String(format: "%.0f MB", peak), met: peak < 200))
        }
        return out
    }
}

// MARK: - Shared by the phases

/// What every phase needs.
struct Context: Sendable {
    let options: BenchOptions
    let stream: SyntheticStream
    /// The embedded broker; nil with `--engine-alone`, where only `EnginePhase` runs.
    let broker: BenchBroker?
    /// The CPU of the measured daemon and of the consume loops (nil: unpinned).
    let affinity: BenchAffinity?
    let directory: String
    let recordBytes: Double
    let logger: Logger

    /// Samples the producer may run ahead of the consumer: 3 MiB of records per partition, well inside the
    /// embedded broker's ~5 MiB.
    var maxAhead: Int { max(1_000, Int(Double(options.partitions) * 3 * 1_048_576 / recordBytes)) }

    /// Probes every 997 samples (a prime, so they visit every partition) in the throughput phase.
    static let throughputProbeEvery = 997

    /// librdkafka properties of every consumer here: the pipeline's (through the config's `kafka:` map), the
    /// consume loops' and the output reader's. The embedded broker answers an empty fetch only after
    /// `fetch.wait.max.ms` (librdkafka's default: 500 ms) even when data arrives meanwhile, which a real broker does
    /// not do; without this, every latency would measure that wait.
    /// `--consumer-property` adds to them.
    var consumerProperties: [String: String] {
        options.consumerProperties.merging(["fetch.wait.max.ms": String(options.fetchWaitMilliseconds)]) { $1 }
    }

    /// The producer the feeder uses: the broker's properties with a bounded local queue, so its memory stays small
    /// next to the pipeline's, and the stream's compression.
    func makeProducer() throws -> KafkaProducer {
        try KafkaProducer(
            properties: kafka.properties.merging(KafkaProperties([
                "queue.buffering.max.kbytes": "32768", "queue.buffering.max.messages": "50000",
                "compression.codec": options.compression,
            ])),
            logger: logger)
    }

    /// Samples and probe spacing of the latency phase at `rate`.
    func latencyPlan(first: Int, rate: Double) -> BenchFeeder.Plan {
        let count = max(1, Int(rate * options.latencySeconds))
        var every = max(1, Int(rate / options.probesPerSecond))
        while gcd(every, options.partitions) != 1 { every += 1 }
        return BenchFeeder.Plan(first: first, count: count, rate: rate, maxAhead: maxAhead, probeEvery: every,
                                timed: true, endProbes: true)
    }

    private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    /// The broker of every phase over Kafka.
    var kafka: BenchBroker {
        guard let broker else { preconditionFailure("a phase over Kafka ran with --engine-alone") }
        return broker
    }

    /// `VmRSS` in MB, or nil.
    static var rssMegabytes: Double? { BenchMemory.residentBytes.map { Double($0) / 1e6 } }
}

/// Latency probes and end markers seen by a consumer, and RSS checkpoints; shared between tasks.
final class ProbeTracker: Sendable {
    private struct State {
        var histogram = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
        /// End probes seen per `producedBefore`, and when the last one arrived.
        var ends: [Int: Set<Int32>] = [:]
        var endTime: [Int: UInt64] = [:]
        var processed = 0
        /// Per partition, the samples produced before its latest probe seen (all of that partition's are processed).
        var partitionFloor: [Int32: Int] = [:]
        /// Samples counted one by one (a consume loop), all partitions together.
        var counted = 0
        var nextRSS: Int
        var rss: [BenchReport.RSSPoint] = []
        var unexpected = 0
        var outputs: [String: Int] = [:]
    }

    private let state: Mutex<State>
    private let partitions: Int
    private let rssEvery: Int
    /// The RSS recorded, MB: this process's, or the daemon's when it runs as a child.
    private let rssSource: @Sendable () -> Double?

    init(partitions: Int, rssEvery: Int, rss: @escaping @Sendable () -> Double? = { Context.rssMegabytes }) {
        self.partitions = partitions
        self.rssEvery = rssEvery
        self.rssSource = rss
        state = Mutex(State(nextRSS: rssEvery))
    }

    /// Samples processed as far as known (from probes, or counted exactly by a consume loop). A probe vouches only
    /// for its own partition, so this may run ahead of partitions that lag (progress and completion use it).
    var processed: Int { state.withLock { $0.processed } }

    /// Samples known to be processed in every partition: the probes of the partition that lags most (no more than
    /// an exact count, where a consume loop keeps one), or the exact count until every partition has shown a probe.
    /// The feeder's flow control uses it: a partition left behind under a backlog would otherwise be fed past the
    /// embedded broker's retention, which drops its oldest records unread. An exact count over all partitions does
    /// not protect it: a one-core consume loop fell 6,644 samples behind in one partition that way.
    var processedEverywhere: Int {
        state.withLock { s in
            guard s.partitionFloor.count == partitions, let floor = s.partitionFloor.values.min() else {
                return s.counted
            }
            return s.counted > 0 ? min(s.counted, floor) : floor
        }
    }

    /// Notes an exact count of samples processed over all partitions.
    func counted(_ count: Int) {
        state.withLock { $0.counted = max($0.counted, count) }
        processed(atLeast: count)
    }

    /// Notes that `count` samples have been processed (RSS is recorded at each `rssEvery`).
    func processed(atLeast count: Int) {
        let due = state.withLock { s -> Bool in
            s.processed = max(s.processed, count)
            return s.processed >= s.nextRSS
        }
        guard due, let mb = rssSource() else { return }
        state.withLock { s in
            while s.processed >= s.nextRSS { s.nextRSS += rssEvery }
            s.rss.append(.init(samples: s.processed, megabytes: mb))
        }
    }

    /// Handles a probe read back at `now`.
    func saw(_ probe: BenchProbe, at now: UInt64) {
        state.withLock { s in
            if probe.timed && now >= probe.sentNanos { _ = s.histogram.record((now - probe.sentNanos) / 1000) }
            if !probe.isEnd {
                s.partitionFloor[probe.partition] = max(s.partitionFloor[probe.partition] ?? 0, probe.producedBefore)
            }
            if probe.isEnd {
                s.ends[probe.producedBefore, default: []].insert(probe.partition)
                if s.ends[probe.producedBefore]!.count == partitions { s.endTime[probe.producedBefore] = now }
            }
        }
        processed(atLeast: probe.isEnd ? 0 : probe.producedBefore)
    }

    /// Counts one output record (pipeline modes) and a dead letter that is not a probe.
    func output(topic: String, unexpected: Bool) {
        state.withLock { s in
            s.outputs[topic, default: 0] += 1
            if unexpected { s.unexpected += 1 }
        }
    }

    /// When every partition's end probe after `total` samples had been seen, or nil.
    func completed(_ total: Int) -> UInt64? { state.withLock { $0.endTime[total] } }

    /// Appends a final RSS point.
    func finalRSS(samples: Int) {
        guard let mb = rssSource() else { return }
        state.withLock { $0.rss.append(.init(samples: samples, megabytes: mb)) }
    }

    var rss: [BenchReport.RSSPoint] { state.withLock { $0.rss } }
    var outputs: [String: Int] { state.withLock { $0.outputs } }
    var unexpected: Int { state.withLock { $0.unexpected } }

    /// The latency percentiles recorded so far.
    func latency(measures: String, rate: Double, achieved: Double) -> BenchReport.Latency {
        state.withLock { s in
            let h = s.histogram
            func ms(_ p: Double) -> Double { Double(h.valueAtPercentile(p)) / 1000 }
            return BenchReport.Latency(
                measures: measures, rate: rate, achievedRate: achieved, probes: Int(h.totalCount),
                p50Milliseconds: ms(50), p90Milliseconds: ms(90), p99Milliseconds: ms(99), p999Milliseconds: ms(99.9),
                maxMilliseconds: Double(h.max) / 1000)
        }
    }
}

/// Waits until `condition` holds, checking every 5 ms; throws if `progress` stays the same for `stall`.
func waitUntil(
    stall: Duration = .seconds(60), what: String, progress: () -> Int, failure: () -> (any Error)? = { nil },
    _ condition: () -> Bool
) async throws {
    var last = progress()
    var since = ContinuousClock.now
    while !condition() {
        if let failure = failure() { throw failure }
        try await Task.sleep(for: .milliseconds(5))
        let now = progress()
        if now != last {
            last = now
            since = ContinuousClock.now
        } else if ContinuousClock.now - since > stall {
            throw BenchError.incomplete("\(what): no progress for \(stall) at \(now) samples")
        }
    }
}

extension Context {
    /// Seconds between two `DispatchTime` readings.
    static func seconds(from start: UInt64, to end: UInt64) -> Double { Double(end &- start) / 1e9 }
}
