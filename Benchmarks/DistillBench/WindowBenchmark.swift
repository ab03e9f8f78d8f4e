import DistillCore
import Foundation

// MARK: - 3. Windows and bootstrap

/// Feeds samples to a `DistillWindowSet` the way the daemon does: event time advancing at a steady rate with
/// a little disorder, bootstrap weights recomputed per sample into one reused buffer, the group fan-out of one
/// teacher pair (pooled + the sample's slice), and `closeReady()` once per second of event time.
///
/// Holds its position in event time across passes, so repeated passes keep moving forward and windows close.
struct WindowIngestDriver {
    /// The windows being fed.
    var set: DistillWindowSet
    /// Group fan-out per slice, prepared once (the daemon caches it per teacher pair and slice).
    let groupsBySlice: [String: [DistillGroupKey]]
    /// The groups of a sample without a slice.
    let pooled: [DistillGroupKey]
    /// Samples per second of event time.
    let eventRate: Int
    /// Reused bootstrap weights.
    var weights: BootstrapWeights
    /// Samples ingested so far.
    var ingested = 0
    /// Samples rejected as late (should stay 0: the disorder is within the grace periods).
    var late = 0
    /// Closed window instances by window name.
    var closed: [String: Int] = [:]

    /// Creates a driver for `config`, grouping by the corpus's teacher pair (newest vs the one before).
    init(config: DistillStatisticsConfig, eventRate: Int) {
        set = DistillWindowSet(config: config)
        let new = SampleCorpus.teacherVersions[0], old = SampleCorpus.teacherVersions[1]
        func groups(_ slice: String?) -> [DistillGroupKey] {
            DistillGroupKey.standardGroups(newTeacher: new, oldTeacher: old, pairedTeacher: new, student: nil,
                                           slice: slice)
        }
        var bySlice: [String: [DistillGroupKey]] = [:]
        for s in SampleCorpus.slices { bySlice[s] = groups(s) }
        groupsBySlice = bySlice
        pooled = groups(nil)
        self.eventRate = eventRate
        weights = BootstrapWeights(replicates: config.replicates)
    }

    /// Brings the `fast` window to steady state before timing: one sample every 5 s of event time over the hour
    /// before the corpus starts, so all 60 of its panes are populated and each close merges a full hour. (The
    /// `drift` panes are not prefilled: ingest touches only the current pane, and a `drift` window closes once per
    /// 3.6 M samples at 1,000 samples/s of event time, so its close cost does not show in a rate.) Returns the
    /// samples used.
    mutating func prefill(_ samples: [DistillSample], sink: inout UInt64) -> Int {
        let hour: Int64 = 3_600_000
        let times = Array(stride(from: SampleCorpus.startTime - hour, to: SampleCorpus.startTime, by: 5000))
        for (i, t) in times.enumerated() {
            var sample = samples[i % samples.count]
            sample.timestamp = t
            weights.reset(idHash: StableHash.id(sample.id))
            late += set.ingest(sample, groups: sample.slice.flatMap { groupsBySlice[$0] } ?? pooled, weights: weights)
            if i % 64 == 0 { close(sink: &sink) }
        }
        close(sink: &sink)
        closed = [:]
        return times.count
    }

    /// Collects the closed windows (the daemon would publish them).
    mutating func close(sink: inout UInt64) {
        let emitted = set.closeReady()
        for w in emitted.statistics { closed[w.name, default: 0] += 1 }
        for w in emitted.calibration { closed[w.name, default: 0] += 1 }
        BlackHole.consume(emitted.statistics.count &+ emitted.calibration.count, into: &sink)
    }

    /// Up to 2 s of disorder per record, well inside the 1 min grace of the `fast` window.
    static func jitter(_ index: Int) -> Int64 { Int64(StableHash.mix(UInt64(index)) % 2000) }

    /// Ingests `sample` at the next event time (the record's own `ts` is overwritten).
    @inline(__always)
    mutating func ingest(_ sample: inout DistillSample, jitter: Int64, sink: inout UInt64) {
        sample.timestamp = SampleCorpus.startTime + Int64(ingested) * 1000 / Int64(eventRate) - jitter
        weights.reset(idHash: StableHash.id(sample.id))
        let groups = sample.slice.flatMap { groupsBySlice[$0] } ?? pooled
        late += set.ingest(sample, groups: groups, weights: weights)
        ingested += 1
        if ingested % eventRate == 0 { close(sink: &sink) }
    }

    /// A note on what the driver did: samples, late, closed windows.
    var summary: String {
        let windows = closed.keys.sorted().map { "\($0) \(closed[$0]!)" }.joined(separator: ", ")
        let minutes = Double(ingested) / Double(eventRate) / 60
        return String(format: "%d samples over %.1f min of event time, %d late; closed: ", ingested, minutes, late)
            + (windows.isEmpty ? "none" : windows)
    }
}

/// `DistillWindowSet.ingest` with the `fast` (1 h / 1 min) and `drift` (14 d / 1 h) windows, B = 64, C = 16,
/// two groups per sample; with and without the default daily calibration window. Baseline: the decode rate
/// measured in the same run.
struct WindowBenchmark {
    /// Issue 6: `monitor` end to end, samples per second.
    static let monitorTarget = 250_000.0

    /// The decoded samples.
    let samples: [DistillSample]
    /// Samples per second of event time.
    let eventRate: Int
    /// Whether to time a `drift` close over 14 days of panes (about a second of setup; skipped by `--quick`).
    let timeDriftClose: Bool

    /// The statistics configuration: defaults (B = 64, 15 bins, `fast` + `drift`), with or without calibration.
    static func config(calibration: Bool) -> DistillStatisticsConfig {
        var c = DistillStatisticsConfig(classes: SampleCorpus.classes, replicates: 64, windows: [.fast, .drift])
        if !calibration { c.calibrationWindows = [] }
        return c
    }

    /// Measures both configurations against `decode` (the `SampleDecoder` measurement of this run).
    func run(_ runner: BenchRunner, decode: Measurement, sink: inout UInt64) throws -> [Measurement] {
        var out: [Measurement] = []
        var localSink = sink
        for calibration in [true, false] {
            let config = Self.config(calibration: calibration)
            try config.validate()
            var driver = WindowIngestDriver(config: config, eventRate: eventRate)
            let jitters = samples.indices.map(WindowIngestDriver.jitter)
            let prefilled = driver.prefill(samples, sink: &localSink)
            let name = calibration ? "ingest: fast + drift + calibration (daily)" : "ingest: fast + drift only"
            var m = runner.measure("windows", name) {
                for (j, s) in samples.enumerated() {
                    var sample = s
                    driver.ingest(&sample, jitter: jitters[j], sink: &localSink)
                }
                return samples.count
            }
            m.compare(with: decode)
            m.notes.append("B = 64, C = 16, 2 groups/sample (pooled + slice), teachers new/old = v12/v11")
            m.notes.append("prefilled with \(prefilled) samples over the hour before; then " + driver.summary)
            if driver.late > 0 { throw BenchFailure("\(name): \(driver.late) samples were late") }
            let monitor = 1 / (1 / decode.median + 1 / m.median)
            let cpuMonitor = 1 / (1 / decode.cpuMedian + 1 / m.cpuMedian)
            m.notes.append(verdict("decode + ingest composed, \(formatRate(monitor))/s, vs `monitor`", monitor,
                                   Self.monitorTarget, cpu: cpuMonitor))
            if !calibration && timeDriftClose { m.notes.append(driftCloseLatency(sink: &localSink)) }
            out.append(m)
        }
        sink = localSink
        return out
    }

    /// Times the hourly `closeReady()` that closes one `drift` window over a full 14 days: one sample per hour
    /// fills the 336 panes (2 groups each, closing as the daemon would), then each further hour's sample moves
    /// the watermark past exactly one more `drift` end. Returns a note with the median over 5 closes.
    func driftCloseLatency(sink: inout UInt64) -> String {
        var driver = WindowIngestDriver(config: Self.config(calibration: false), eventRate: eventRate)
        let hour: Int64 = 3_600_000, grace: Int64 = 5 * 60_000
        func offer(at time: Int64, _ i: Int) {
            var sample = samples[i % samples.count]
            sample.timestamp = time
            driver.weights.reset(idHash: StableHash.id(sample.id))
            driver.late += driver.set.ingest(sample, groups: driver.pooled, weights: driver.weights)
        }
        let first = SampleCorpus.startTime - 336 * hour
        for h in 0..<336 {
            offer(at: first + Int64(h) * hour, h)
            driver.close(sink: &sink)
        }
        let clock = ContinuousClock()
        var millis: [Double] = []
        var closedDrift = 0
        for step in 0..<5 {
            // Lands `grace` after the next hour boundary: the watermark reaches that boundary, one drift end.
            offer(at: SampleCorpus.startTime + Int64(step - 1) * hour + grace, 336 + step)
            let start = clock.now
            let emitted = driver.set.closeReady()
            millis.append(start.duration(to: clock.now).seconds * 1000)
            closedDrift += emitted.statistics.filter { $0.name == "drift" }.count
            BlackHole.consume(emitted.statistics.count, into: &sink)
        }
        return String(format: "one hourly `drift` close over 336 panes × 2 groups: %.1f ms median (%.1f–%.1f), "
                      + "%d drift windows closed in 5 steps", Measurement.median(millis), millis.min() ?? 0,
                      millis.max() ?? 0, closedDrift)
    }
}
