import ArgumentParser
import DistillDaemon
import DistillWire
import Foundation

/// `distilld bench`: sizes a deployment by running the daemon's pipeline over the embedded broker.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure samples/s, produce→output latency and RSS of the real pipeline on a synthetic stream.",
        discussion: """
            Generates a synthetic sample stream into the embedded broker (run as a child process, so its stored \
            data does not count in this process's RSS), runs the daemon's own pipeline on it for each mode, and \
            prints each mode's rate as a ratio of two baselines measured in the same run: a consume-only loop with \
            the same librdkafka settings, and Foundation's JSONDecoder on the same records. With --format \
            json,protobuf every mode also runs on protobuf records, and is compared with its JSON run. \
            Latency is measured in a \
            second phase at --rate (default: half the rate just measured): probes ride behind the samples in their \
            partitions, and their latency runs from the producer's send call to reading the pipeline's dead letter \
            for them back from the dead-letter topic. RSS comes from /proc/self/status (VmHWM, VmRSS).
            """
    )

    @Option(help: "Modes to run, comma-separated: decode, monitor, full.")
    var modes: String = "decode,monitor,full"

    @Option(help: "Students for full mode, comma-separated: softmax, mlp.")
    var student: String = "softmax,mlp"

    @Option(name: .customLong("format"),
            help: """
                Record formats of the generated stream, comma-separated: json, protobuf. Each mode runs once per \
                format (the pipeline's topics.formats follows), and raw consume is measured on each format's records.
                """)
    var formats: String = "json"

    @Option(help: "Samples per mode in the throughput phase (RSS is printed every --rss-every samples).")
    var samples: Int = 200_000

    @Option(name: .customLong("features"), help: "D, the length of each sample's features.")
    var features: Int = 64

    @Option(help: "C, the number of classes.")
    var classes: Int = 16

    @Option(help: "Teacher versions on every sample.")
    var teacherVersions: Int = 2

    @Option(help: "Fraction of samples with a label.")
    var labelRate: Double = 0.2

    @Option(help: "Of the labeled samples, the fraction whose label comes later on the labels topic.")
    var lateLabelShare: Double = 0.5

    @Option(help: "Traffic slices.")
    var slices: Int = 3

    @Option(help: "Bootstrap replicates B.")
    var replicates: Int = 64

    @Option(help: "Samples per second of event time (how busy the simulated deployment is).")
    var eventRate: Double = 1_000

    @Option(help: "Partitions of the generated samples topics (the embedded broker keeps ~5 MiB each).")
    var partitions: Int = 32

    @Option(help: "Producer rate of the latency phase, samples/s (default: half the measured rate of the mode).")
    var rate: Double?

    @Option(help: "Length of the latency phase in seconds (0 skips it).")
    var latencySeconds: Double = 10

    @Option(help: "Latency probes per second.")
    var probesPerSecond: Double = 500

    @Option(help: "Record RSS every this many processed samples.")
    var rssEvery: Int = 1_000_000

    @Option(help: "Records decoded by Foundation's JSONDecoder for its baseline.")
    var jsonDecoderSamples: Int = 20_000

    @Option(help: "The pipeline's state.interval, s: outputs flushed, state checkpoint written, offsets committed.")
    var stateInterval: Double = 10

    @Option(name: .customLong("fetch-wait-ms"),
            help: "fetch.wait.max.ms of every consumer, the pipeline's too (the mock broker holds empty fetches).")
    var fetchWaitMilliseconds: Int = 10

    @Option(name: .customLong("consumer-property"), help: ArgumentHelp("""
        A librdkafka property of every consumer, the pipeline's too (through its config's kafka: map), as \
        KEY=VALUE; repeat for more (e.g. queued.max.messages.kbytes=16384).
        """, valueName: "key=value"))
    var consumerProperty: [String] = []

    @Option(help: """
        compression.codec of the generated stream's producer (none, gzip, snappy, lz4, zstd), as the upstream \
        pipeline would set it: every consumer of the stream, the pipeline's too, decompresses it.
        """)
    var compression = "none"

    @Option(help: "Seed of the generated stream.")
    var seed: UInt64 = 1

    @Flag(help: "Run the embedded broker inside this process (its data then counts in the RSS figures).")
    var inProcessBroker = false

    @Flag(help: """
        Run the measured daemon inside this process instead of as a `distilld run` child (its RSS figures then \
        include the benchmark's own feeder and baselines).
        """)
    var inProcessPipeline = false

    @Flag(help: """
        Also run each monitor/full configuration's engine in this process on the same records without Kafka: \
        the engine's ceiling on one core, beside the same mode over the broker.
        """)
    var engineOnly = false

    @Flag(help: """
        Run only the engine of each monitor/full configuration on the generated records, without a broker, \
        baselines over Kafka or a daemon (the JSONDecoder baseline still runs).
        """)
    var engineAlone = false

    @Flag(name: .customLong("no-pin"), help: """
        Do not pin: by default the measured `distilld run` child gets the last CPU to itself from the first \
        monitor/full phase on, and the benchmark and the broker the others (baselines and decode run unpinned).
        """)
    var noPin = false

    @Flag(help: "Print the report as JSON on stdout (progress still goes to stderr).")
    var json = false

    @OptionGroup var logging: LoggingOptions

    func options() throws -> BenchOptions {
        var o = BenchOptions()
        o.modes = try list(modes, "--modes")
        o.students = try list(student, "--student")
        o.formats = try list(formats, "--format")
        o.samples = samples
        o.features = features
        o.classes = classes
        o.teacherVersions = teacherVersions
        o.labelRate = labelRate
        o.lateLabelShare = lateLabelShare
        o.slices = slices
        o.replicates = replicates
        o.eventRate = eventRate
        o.partitions = partitions
        o.latencyRate = rate
        o.latencySeconds = latencySeconds
        o.probesPerSecond = probesPerSecond
        o.rssEvery = rssEvery
        o.jsonDecoderSamples = jsonDecoderSamples
        o.fetchWaitMilliseconds = fetchWaitMilliseconds
        o.compression = compression
        for pair in consumerProperty {
            guard let equals = pair.firstIndex(of: "=") else {
                throw ValidationError("--consumer-property takes KEY=VALUE, got '\(pair)'")
            }
            o.consumerProperties[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        o.stateIntervalSeconds = stateInterval
        o.seed = seed
        o.broker = inProcessBroker ? .inProcess : .childProcess(executable: Self.executablePath)
        o.engineOnly = engineOnly || engineAlone
        o.engineAlone = engineAlone
        o.pinPipeline = !noPin
        o.pipeline = inProcessPipeline ? .inProcess : .childProcess(executable: Self.executablePath)
        return o
    }

    func validate() throws {
        do {
            try options().validate()
        } catch let error as BenchError {
            throw ValidationError(error.description)
        }
    }

    func run() async throws {
        let logger = logging.bootstrap(label: "distilld.bench")
        var o = try options()
        o.progress = { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }
        let report = try await BenchRunner(options: o, logger: logger).run()
        print(json ? try report.json() : report.table)
    }

    private func list<T: RawRepresentable>(_ text: String, _ option: String) throws -> [T] where T.RawValue == String {
        try text.split(separator: ",").map { part in
            let name = part.trimmingCharacters(in: .whitespaces)
            guard let value = T(rawValue: name) else { throw ValidationError("\(option): unknown value '\(name)'") }
            return value
        }
    }

    /// This executable, to start `distilld broker` as a child process.
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
