import Foundation

// MARK: - Options

/// Command-line options of `distilld-bench`, parsed by hand (the target depends only on DistillCore).
struct BenchOptions: Sendable {
    /// Fast smoke run: few records, short repetitions (< 10 s even in a debug build).
    var quick = false
    /// Print one JSON object instead of the text table.
    var json = false
    /// Timed repetitions per measurement (median, min and max are reported).
    var repetitions = 7
    /// Minimum wall time of one repetition, seconds (whole passes are repeated until it is reached).
    var repetitionSeconds = 0.25
    /// Warm-up time before the timed repetitions, seconds.
    var warmupSeconds = 0.25
    /// Distinct generated records.
    var records = 4096
    /// Event time covered per sample in the window benchmark, as samples per second of event time.
    var eventRate = 1000
    /// Seed of the record generator.
    var seed: UInt64 = 0x00D1_5711_1D00_5EED
    /// Benchmark groups to run (`decode`, `learn`, `windows`, `pipeline`); empty runs all.
    var only: Set<String> = []
    /// Free-form label copied into the output (e.g. `generic` or `haswell`).
    var tag = ""

    /// The help text.
    static let usage = """
        usage: distilld-bench [--quick] [--json] [--repetitions N] [--seconds S] [--warmup S] [--records N]
                              [--event-rate N] [--seed N] [--only decode,learn,windows,pipeline] [--tag TEXT]

          --quick          smoke run: 256 records, 3 repetitions of >= 0.03 s (under 10 s in debug)
          --json           print the results as one JSON object
          --repetitions N  timed repetitions per measurement (default 7)
          --seconds S      minimum time of one repetition (default 0.25)
          --warmup S       warm-up time per measurement (default 0.25)
          --records N      distinct generated records (default 4096)
          --event-rate N   samples per second of event time in the window benchmark (default 1000)
          --seed N         seed of the record generator
          --only LIST      comma-separated benchmark groups to run (default: all)
          --tag TEXT       label recorded in the output, e.g. the build flavour
        Build with `swift build -c release`; a debug build's numbers mean nothing.
        """

    /// Parses `arguments` (without the program name). Throws `BenchUsageError` on anything unknown.
    static func parse(_ arguments: [String]) throws(BenchUsageError) -> BenchOptions {
        var options = BenchOptions()
        var explicit = Set<String>()
        var rest = arguments[...]
        func value(_ flag: String) throws(BenchUsageError) -> String {
            guard let v = rest.popFirst() else { throw BenchUsageError(message: "\(flag) needs a value") }
            return v
        }
        func number<T: LosslessStringConvertible & Comparable>(_ flag: String, min: T) throws(BenchUsageError) -> T {
            let text = try value(flag)
            guard let v = T(text), v >= min else {
                throw BenchUsageError(message: "\(flag) must be a number >= \(min) (got '\(text)')")
            }
            explicit.insert(flag)
            return v
        }
        while let arg = rest.popFirst() {
            switch arg {
            case "--quick": options.quick = true
            case "--json": options.json = true
            case "--repetitions": options.repetitions = try number(arg, min: 1)
            case "--seconds": options.repetitionSeconds = try number(arg, min: 0.0)
            case "--warmup": options.warmupSeconds = try number(arg, min: 0.0)
            case "--records": options.records = try number(arg, min: 16)
            case "--event-rate": options.eventRate = try number(arg, min: 1)
            case "--seed": options.seed = try number(arg, min: 0)
            case "--tag": options.tag = try value(arg)
            case "--only":
                let groups = Set(try value(arg).split(separator: ",").map(String.init))
                let known: Set = ["decode", "learn", "windows", "pipeline"]
                guard !groups.isEmpty, groups.isSubset(of: known) else {
                    throw BenchUsageError(message: "--only takes a list of \(known.sorted().joined(separator: ","))")
                }
                options.only = groups
            case "-h", "--help": throw BenchUsageError(message: nil)
            default: throw BenchUsageError(message: "unknown argument '\(arg)'")
            }
        }
        if options.quick {
            if !explicit.contains("--records") { options.records = 256 }
            if !explicit.contains("--repetitions") { options.repetitions = 3 }
            if !explicit.contains("--seconds") { options.repetitionSeconds = 0.03 }
            if !explicit.contains("--warmup") { options.warmupSeconds = 0.01 }
        }
        return options
    }

    /// Whether benchmark group `name` should run.
    func runs(_ name: String) -> Bool { only.isEmpty || only.contains(name) }
}

/// A command-line mistake; a nil message asks for the help text only.
struct BenchUsageError: Error {
    /// What was wrong, or nil for `--help`.
    var message: String?
}

// MARK: - Measurement

/// The rates of one measured operation over the timed repetitions.
struct Measurement: Sendable, Codable {
    /// Benchmark group: `decode`, `learn`, `windows` or `pipeline`.
    var group: String
    /// What was measured, e.g. `SampleDecoder.decode(_:into:)`.
    var name: String
    /// Unit of the rates, e.g. `samples/s`.
    var unit: String
    /// Rate of each timed repetition (units over wall time, `ContinuousClock`).
    var rates: [Double]
    /// Rate of each timed repetition over this thread's CPU time: close to the wall rate on an idle machine,
    /// and much less disturbed than it when other processes share the cores.
    var cpuRates: [Double] = []
    /// Name of the baseline this measurement is compared with (nil for a baseline itself).
    var baseline: String?
    /// Median rate divided by the baseline's median rate.
    var ratio: Double?
    /// Notes (settings, target verdicts).
    var notes: [String] = []

    /// Median of the repetition rates.
    var median: Double { Self.median(rates) }
    /// Slowest repetition.
    var min: Double { rates.min() ?? 0 }
    /// Fastest repetition.
    var max: Double { rates.max() ?? 0 }

    /// Median of the CPU-time rates.
    var cpuMedian: Double { Self.median(cpuRates) }
    /// Median CPU-time rate divided by the baseline's.
    var cpuRatio: Double?

    /// Sets the baseline and ratios against `other`.
    mutating func compare(with other: Measurement) {
        baseline = other.name
        ratio = other.median > 0 ? median / other.median : nil
        cpuRatio = other.cpuMedian > 0 ? cpuMedian / other.cpuMedian : nil
    }

    /// Median of `values` (0 when empty).
    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    enum CodingKeys: String, CodingKey {
        case group, name, unit, rates, cpuRates, baseline, ratio, cpuRatio, notes, median, min, max, cpuMedian
    }

    /// Encodes the stored fields plus median, min and max.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(group, forKey: .group)
        try c.encode(name, forKey: .name)
        try c.encode(unit, forKey: .unit)
        try c.encode(rates.map { $0.rounded() }, forKey: .rates)
        try c.encode(cpuRates.map { $0.rounded() }, forKey: .cpuRates)
        try c.encodeIfPresent(baseline, forKey: .baseline)
        try c.encodeIfPresent(ratio.map { ($0 * 1000).rounded() / 1000 }, forKey: .ratio)
        try c.encodeIfPresent(cpuRatio.map { ($0 * 1000).rounded() / 1000 }, forKey: .cpuRatio)
        try c.encode(cpuMedian.rounded(), forKey: .cpuMedian)
        try c.encode(notes, forKey: .notes)
        try c.encode(median.rounded(), forKey: .median)
        try c.encode(min.rounded(), forKey: .min)
        try c.encode(max.rounded(), forKey: .max)
    }

    /// Decodes the stored fields (median, min and max are derived).
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        group = try c.decode(String.self, forKey: .group)
        name = try c.decode(String.self, forKey: .name)
        unit = try c.decode(String.self, forKey: .unit)
        rates = try c.decode([Double].self, forKey: .rates)
        cpuRates = try c.decode([Double].self, forKey: .cpuRates)
        baseline = try c.decodeIfPresent(String.self, forKey: .baseline)
        ratio = try c.decodeIfPresent(Double.self, forKey: .ratio)
        cpuRatio = try c.decodeIfPresent(Double.self, forKey: .cpuRatio)
        notes = try c.decode([String].self, forKey: .notes)
    }

    /// Creates a measurement from repetition rates.
    init(group: String, name: String, unit: String, rates: [Double], cpuRates: [Double]) {
        self.group = group
        self.name = name
        self.unit = unit
        self.rates = rates
        self.cpuRates = cpuRates
    }
}

/// Times whole passes of a workload with `ContinuousClock`: warm-up, then `repetitions` repetitions of at least
/// `repetitionSeconds` each; the rate of a repetition is the units it processed over its wall time.
struct BenchRunner {
    /// The options in force.
    let options: BenchOptions
    let clock = ContinuousClock()

    /// Measures `pass`, which runs one pass over the workload and returns the units it processed
    /// (samples, updates…). The pass must consume its results (see `BlackHole`).
    func measure(_ group: String, _ name: String, unit: String = "samples/s", _ pass: () -> Int) -> Measurement {
        let warmupEnd = clock.now.advanced(by: .seconds(options.warmupSeconds))
        repeat { _ = pass() } while clock.now < warmupEnd
        var rates: [Double] = [], cpuRates: [Double] = []
        let minimum = Duration.seconds(options.repetitionSeconds)
        for _ in 0..<options.repetitions {
            var units = 0
            let start = clock.now
            let cpuStart = Self.threadCPUSeconds()
            var elapsed = Duration.zero
            repeat {
                units += pass()
                elapsed = start.duration(to: clock.now)
            } while elapsed < minimum
            let cpu = Self.threadCPUSeconds() - cpuStart
            rates.append(Double(units) / elapsed.seconds)
            cpuRates.append(cpu > 0 ? Double(units) / cpu : 0)
        }
        return Measurement(group: group, name: name, unit: unit, rates: rates, cpuRates: cpuRates)
    }

    /// CPU time of the calling thread, seconds (`CLOCK_THREAD_CPUTIME_ID`).
    static func threadCPUSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) * 1e-18
    }
}

// MARK: - Keeping results alive

/// A sink the optimizer cannot see through: every benchmark folds its results into it, and the total is printed,
/// so no measured work can be removed as dead code.
enum BlackHole {
    /// Folds `value` into `state` through a call the optimizer must treat as opaque.
    @inline(never) @_optimize(none)
    static func consume(_ value: UInt64, into state: inout UInt64) {
        state = (state &* 0x100_0000_01B3) ^ value
    }

    /// Folds a float's bit pattern into `state`.
    @inline(__always)
    static func consume(_ value: Float, into state: inout UInt64) {
        consume(UInt64(value.bitPattern), into: &state)
    }

    /// Folds an integer into `state`.
    @inline(__always)
    static func consume(_ value: Int, into state: inout UInt64) {
        consume(UInt64(bitPattern: Int64(value)), into: &state)
    }
}

// MARK: - Process figures

/// Figures about this process.
enum ProcessStatus {
    /// Peak resident set size (VmHWM) in KiB from /proc/self/status, or nil where unavailable.
    static func peakRSSKiB() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        return nil
    }
}
