import DistillWire
import Foundation

// MARK: - BenchOptions

/// What `distilld bench` measures and on what stream. Defaults follow issue 6: D = 64 features, C = 16 classes,
/// 2 teacher versions, 3 slices, B = 64 replicates, the default windows (`fast` 1 h / 1 min, `drift` 14 d / 1 h).
public struct BenchOptions: Sendable {
    /// A pipeline configuration to measure.
    public enum Mode: String, Sendable, CaseIterable, Codable {
        /// Consume and decode only (`SampleDecoder`), no engine.
        case decode
        /// The daemon's pipeline without the online student: windows, bootstrap, triggers, outputs.
        case monitor
        /// The daemon's pipeline with the online student (knowledge distillation).
        case full
    }

    /// The online student's shape in `full` mode.
    public enum Student: String, Sendable, CaseIterable, Codable {
        /// Softmax regression D → C.
        case softmax
        /// MLP D-64-C.
        case mlp
    }

    /// Where the measured daemon runs (`monitor`, `full`).
    public enum PipelinePlacement: Sendable, Equatable {
        /// `DistillService` inside this process: its RSS then includes the benchmark's own (feeder, baselines).
        case inProcess
        /// `distilld run` (this executable) as a child process: RSS figures are the daemon's alone.
        case childProcess(executable: String)
    }

    /// Where the broker runs.
    public enum BrokerPlacement: Sendable, Equatable {
        /// librdkafka's mock cluster inside this process. Its stored data counts in this process's RSS.
        case inProcess
        /// `distilld broker` as a child process (this executable), so RSS figures are the pipeline's own.
        case childProcess(executable: String)
    }

    /// Modes to run, in this order.
    public var modes: [Mode] = [.decode, .monitor, .full]
    /// Students measured in `full` mode.
    public var students: [Student] = [.softmax, .mlp]
    /// Record formats of the generated stream: each mode runs once per format, and the raw consume baseline is
    /// measured on each format's records (`topics.formats` of the pipeline follows).
    public var formats: [RecordFormat] = [.json]
    /// Samples produced per mode for the throughput phase.
    public var samples = 200_000
    /// D, the length of `features`.
    public var features = 64
    /// C, the number of classes.
    public var classes = 16
    /// Teacher versions on every sample (their logits are all carried).
    public var teacherVersions = 2
    /// Fraction of samples that carry a label (inline or late).
    public var labelRate = 0.2
    /// Of the labeled samples, the fraction whose label arrives later on the `labels` topic.
    public var lateLabelShare = 0.5
    /// Traffic slices (drawn with skewed weights).
    public var slices = 3
    /// Bootstrap replicates B.
    public var replicates = 64
    /// Samples per second of event time: how much traffic one second of a real deployment carries. Lower values
    /// close windows after fewer samples (1,000/s: a `fast` window closes every 60,000 samples).
    public var eventRate = 1_000.0
    /// Partitions of each generated `samples` topic (the embedded broker keeps about 5 MiB per partition).
    public var partitions = 32
    /// Producer rate of the latency phase, samples/s; nil: half the rate measured in the throughput phase.
    public var latencyRate: Double?
    /// Length of the latency phase; 0 skips it.
    public var latencySeconds = 10.0
    /// Probe records per second in the latency phase.
    public var probesPerSecond = 500.0
    /// RSS is recorded each time this many more samples have been processed (and at the end).
    public var rssEvery = 1_000_000
    /// Records decoded by Foundation's `JSONDecoder` for its baseline.
    public var jsonDecoderSamples = 20_000
    /// `fetch.wait.max.ms` of every consumer (the pipeline's included): the embedded broker holds an empty fetch
    /// this long even when data arrives meanwhile.
    public var fetchWaitMilliseconds = 10
    /// More librdkafka properties of every consumer, the pipeline's too (its config's `kafka:` map, which its
    /// producer also receives): `queued.max.messages.kbytes`, `fetch.max.bytes` and the like, to size a deployment's
    /// own settings. `fetch.wait.max.ms` has an option of its own.
    public var consumerProperties: [String: String] = [:]
    /// `compression.codec` of the generated stream's producer: the upstream pipeline's choice, `none` by default as
    /// in librdkafka and the Java client. A compressed feed is decompressed by every consumer of it, the daemon's
    /// included, in librdkafka's broker thread: on the daemon's core.
    public var compression = "none"
    /// The pipeline's `state.interval`, seconds (the daemon's default is 10): every interval it flushes its
    /// outputs, writes its state checkpoint and commits.
    public var stateIntervalSeconds = 10.0
    /// Seed of the generated stream.
    public var seed: UInt64 = 1
    /// Where the broker runs.
    public var broker: BrokerPlacement = .inProcess
    /// Where the measured daemon runs.
    public var pipeline: PipelinePlacement = .inProcess
    /// Also runs each `monitor`/`full` configuration's engine in this thread on the same records without Kafka
    /// (`EnginePhase`): the engine's ceiling on one core, beside the same mode over the broker.
    public var engineOnly = false
    /// Runs only the engine phases (`EnginePhase`) of the `monitor`/`full` configurations: no broker, no baselines over
    /// Kafka, no daemon. For sizing and profiling the engine alone, without the broker's and the feeder's threads.
    public var engineAlone = false
    /// Runs the measured `distilld run` child and the consume loops of raw consume and `decode` on a CPU of their own,
    /// and the benchmark and the broker on the others (`BenchAffinity`), from the raw consume baseline on: the
    /// issue's "one core for the pipeline". It moves every thread of this process, so it is off here (tests and other
    /// embedders) and on by default in the CLI.
    public var pinPipeline = false
    /// Directory for the pipeline's state checkpoints and the broker's files (a fresh temporary one by default).
    public var workDirectory: String?
    /// Prints progress lines (stderr in the CLI).
    public var progress: (@Sendable (String) -> Void)?

    /// Creates the defaults.
    public init() {}

    /// The configurations measured, in order: `decode`, `monitor`, then `full` once per student; each once per
    /// format, side by side.
    public var runs: [BenchRun] {
        modes.flatMap { mode -> [BenchRun] in
            let studentsOfMode: [Student?] = mode == .full ? students : [nil]
            return studentsOfMode.flatMap { student in
                formats.map { BenchRun(mode: mode, student: student, format: $0) }
            }
        }
    }

    /// The values `--compression` takes (librdkafka's `compression.codec`).
    public static let compressionCodecs = ["none", "gzip", "snappy", "lz4", "zstd"]

    /// Checks every option; the message says which and what is allowed.
    public func validate() throws(BenchError) {
        func require(_ ok: Bool, _ message: String) throws(BenchError) {
            if !ok { throw BenchError.invalidOption(message) }
        }
        try require(!modes.isEmpty, "give at least one mode (decode, monitor, full)")
        try require(!modes.contains(.full) || !students.isEmpty, "full mode needs at least one student")
        try require(!formats.isEmpty && Set(formats).count == formats.count,
                    "give each format at most once, and at least one (json, protobuf)")
        try require(samples >= 1, "--samples must be at least 1")
        try require((1...4096).contains(features), "--features must be in 1...4096")
        try require((2...1024).contains(classes), "--classes must be in 2...1024")
        try require((1...32).contains(teacherVersions), "--teacher-versions must be in 1...32")
        try require((0...1).contains(labelRate), "--label-rate must be in 0...1")
        try require((0...1).contains(lateLabelShare), "--late-label-share must be in 0...1")
        try require((1...64).contains(slices), "--slices must be in 1...64")
        try require((0...10_000).contains(replicates), "--replicates must be in 0...10000")
        try require(eventRate > 0 && eventRate <= 1_000_000, "--event-rate must be in (0, 1000000] samples/s")
        try require((1...256).contains(partitions), "--partitions must be in 1...256")
        try require(latencyRate.map { $0 > 0 } ?? true, "--rate must be positive")
        try require(latencySeconds >= 0 && latencySeconds <= 3600, "--latency-seconds must be in 0...3600")
        try require(probesPerSecond > 0, "--probes-per-second must be positive")
        try require(rssEvery >= 1, "--rss-every must be at least 1")
        try require((1...10_000).contains(fetchWaitMilliseconds), "--fetch-wait-ms must be in 1...10000")
        try require(consumerProperties["fetch.wait.max.ms"] == nil,
                    "--consumer-property: give fetch.wait.max.ms with --fetch-wait-ms")
        for (key, value) in consumerProperties {
            // Property names are lowercase words with dots; values go into the pipeline's YAML as quoted strings.
            let name = key.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || ".-_".contains($0)) }
            try require(!key.isEmpty && name && !value.isEmpty && !value.contains(where: { "\"\\\n".contains($0) }),
                        "--consumer-property takes KEY=VALUE (a librdkafka property name, a value without quotes), "
                            + "got '\(key)=\(value)'")
        }
        try require(Self.compressionCodecs.contains(compression),
                    "--compression must be one of \(Self.compressionCodecs.joined(separator: ", "))")
        try require(stateIntervalSeconds >= 0.1, "--state-interval must be at least 0.1 s")
        try require(jsonDecoderSamples >= 1, "--json-decoder-samples must be at least 1")
        try require(!engineAlone || !modes.contains(.decode),
                    "--engine-alone measures the engine of monitor and full; decode is measured over the broker")
    }
}

/// One measured configuration: a mode, for `full` the student, and the records' format.
public struct BenchRun: Sendable, Hashable, Codable, CustomStringConvertible {
    public var mode: BenchOptions.Mode
    public var student: BenchOptions.Student?
    public var format: RecordFormat

    /// Creates a configuration; JSON records unless `format` says otherwise.
    public init(mode: BenchOptions.Mode, student: BenchOptions.Student?, format: RecordFormat = .json) {
        self.mode = mode
        self.student = student
        self.format = format
    }

    /// `decode`, `monitor`, `full/softmax`, `full/mlp`; `decode (protobuf)` and so on for protobuf records.
    public var description: String {
        let base = student.map { "\(mode.rawValue)/\($0.rawValue)" } ?? mode.rawValue
        return format == .json ? base : "\(base) (\(format.rawValue))"
    }

    /// Usable in topic and group names.
    var slug: String {
        ([mode.rawValue] + [student?.rawValue, format == .json ? nil : format.rawValue].compactMap { $0 })
            .joined(separator: "-")
    }
}

// MARK: - BenchError

/// Why `distilld bench` could not measure, with what to do.
public enum BenchError: Error, CustomStringConvertible, Sendable {
    /// An option is out of range.
    case invalidOption(String)
    /// The broker could not be started or reached.
    case broker(String)
    /// A phase did not finish: records were lost or the pipeline stopped.
    case incomplete(String)

    public var description: String {
        switch self {
        case .invalidOption(let why): "invalid option: \(why)"
        case .broker(let why): "broker: \(why)"
        case .incomplete(let why): "benchmark incomplete: \(why)"
        }
    }
}
