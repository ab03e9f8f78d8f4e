import Foundation

// MARK: - BenchReport

/// Everything `distilld bench` measured, as printed (``table``) and as `--json` (``json()``).
public struct BenchReport: Sendable, Codable {
    /// The stream and settings measured.
    public struct Setup: Sendable, Codable {
        public var samples: Int
        public var features: Int
        public var classes: Int
        public var teacherVersions: Int
        public var slices: Int
        public var labelRate: Double
        public var lateLabelShare: Double
        public var replicates: Int
        public var windows: String
        public var eventRate: Double
        public var partitions: Int
        /// The pipeline's `state.interval`, s.
        public var stateIntervalSeconds: Double
        /// `compression.codec` of the generated stream.
        public var compression: String
        /// Mean JSON record size, bytes.
        public var meanRecordBytes: Double
        /// Mean protobuf record size, bytes, when protobuf records were measured.
        public var meanProtobufRecordBytes: Double?
        public var broker: String
        public var cpus: Int
        /// Where the measured daemon ran: its own CPU (`BenchAffinity`), or why it shared them.
        public var pinning: String?
    }

    /// A rate measured in the same run, against which the modes are given as ratios.
    public struct Baseline: Sendable, Codable {
        public var name: String
        public var samples: Int
        public var seconds: Double
        public var samplesPerSecond: Double
    }

    /// Latency percentiles of one configuration's latency phase.
    public struct Latency: Sendable, Codable {
        /// What was timed, in words.
        public var measures: String
        /// Producer rate of the phase, samples/s.
        public var rate: Double
        /// Rate the pipeline actually processed during the phase, samples/s.
        public var achievedRate: Double
        public var probes: Int
        public var p50Milliseconds: Double
        public var p90Milliseconds: Double
        public var p99Milliseconds: Double
        public var p999Milliseconds: Double
        public var maxMilliseconds: Double
        /// Busy share of each CPU during the phase, percent (`/proc/stat`), keyed `cpu0`, `cpu1`, …: a CPU of the
        /// benchmark and broker near 100% means their queueing is in the figures too.
        public var cpuBusyPercent: [String: Double]? = nil
        /// The daemon's peak RSS during the phase alone, MB: fed below its capacity, without the throughput phase's
        /// backlog (which fills librdkafka's prefetch queue). Child-process daemons only.
        public var peakRSSMegabytes: Double? = nil
        /// The daemon's RSS when the phase started, MB (what the throughput phase left).
        public var startRSSMegabytes: Double? = nil
    }

    /// What writing an engine state as a checkpoint adds to the process's RSS at its peak, and how long it takes:
    /// streamed into the file as the daemon writes it, and encoded whole first as it did before.
    public struct CheckpointCost: Sendable, Codable {
        public var fileMegabytes: Double
        public var streamedAddedMegabytes: Double
        public var streamedMilliseconds: Double
        public var wholeAddedMegabytes: Double
        public var wholeMilliseconds: Double
    }

    /// RSS once `samples` had been processed.
    public struct RSSPoint: Sendable, Codable {
        public var samples: Int
        public var megabytes: Double
    }

    /// One measured configuration.
    public struct RunResult: Sendable, Codable {
        /// `decode`, `monitor`, `full/softmax`, `full/mlp`.
        public var name: String
        /// Samples produced in the throughput phase.
        public var produced: Int
        /// Samples the configuration processed: for the pipeline, `distilld_samples_total{outcome="ingested"}`
        /// (over both phases, minus the latency phase's samples); for `decode`, samples decoded without error.
        public var processed: Int
        /// Samples of the throughput phase processed per second, from partition assignment to the last end probe's
        /// output.
        public var samplesPerSecond: Double
        public var seconds: Double
        /// `samplesPerSecond` over the raw consume rate of records in the same format.
        public var vsRawConsume: Double?
        /// `samplesPerSecond` over Foundation `JSONDecoder`'s rate.
        public var vsJSONDecoder: Double?
        /// For protobuf records: `samplesPerSecond` over the same configuration's rate on JSON records.
        public var vsJSONFormat: Double?
        /// Whether the whole throughput phase was produced before the consumer started (it fits in the broker).
        public var preloaded: Bool
        /// Seconds the producer waited for the consumer during the throughput phase (with none, the producer,
        /// not the pipeline, may have set the pace).
        public var producerWaitedSeconds: Double
        public var latency: Latency?
        /// RSS when the configuration started (after the previous one ended), MB (10^6 bytes).
        public var startRSSMegabytes: Double?
        /// Peak RSS during this configuration (`VmHWM`, reset at its start), MB.
        public var peakRSSMegabytes: Double?
        /// RSS every `--rss-every` samples and at the end, MB.
        public var rss: [RSSPoint]
        /// Output records seen per output topic (pipeline modes), counted by the benchmark's own consumer.
        public var outputs: [String: Int]
        /// Records dead-lettered other than the benchmark's probes (should be 0).
        public var unexpectedDeadLetters: Int
        /// Engine-only runs: the engine state's encoded size at the end, MB, in all and for its largest parts (what a
        /// state checkpoint writes).
        public var stateMegabytes: [String: Double]? = nil
        /// Engine-only runs: how long encoding that whole state took, ms (a checkpoint's encoding, on one thread).
        public var stateEncodeMilliseconds: Double? = nil
        /// Engine-only runs: what writing that state as a checkpoint adds to RSS (see `CheckpointCost`).
        public var checkpointCost: CheckpointCost? = nil
        /// Pipeline runs: the daemon's own sample counters at its stop (`ingested`, `late`, `duplicate`, `dead
        /// letters`, the probes' included), which tell where samples that were produced but not processed went.
        public var daemonCounters: [String: Int]? = nil
        /// Engine-only runs: the engine's time per record (see `RecordTimes`).
        public var recordTimes: RecordTimes? = nil
    }

    /// How long the engine took for each record of an engine-only run, every record timed. What a record waits for
    /// in the daemon's loop beyond its own time: the records before it, so a slow record delays its whole batch.
    public struct RecordTimes: Sendable, Codable {
        public var p50Microseconds: Double
        public var p99Microseconds: Double
        public var p999Microseconds: Double
        public var maxMicroseconds: Double
        /// Records that took over 1 ms, and what they did.
        public var over1ms: Int
        public var over1msClosingWindows: Int
        public var over1msAfterSnapshot: Int
        /// The slowest records, slowest first.
        public var slowest: [SlowRecord]
        /// Records between two state snapshots (taken and held as a checkpoint holds its snapshot).
        public var snapshotEvery: Int
    }

    /// One slow record of an engine-only run.
    public struct SlowRecord: Sendable, Codable {
        public var microseconds: Double
        /// Outputs the record produced (window snapshots, alerts, calibration checks): it closed windows.
        public var outputs: Int
        /// It was the first record after a state snapshot (its mutations copied what the snapshot shared).
        public var afterSnapshot: Bool
    }

    /// An issue-6 target and whether it was met here.
    public struct Target: Sendable, Codable {
        public var name: String
        public var target: String
        public var measured: String
        public var met: Bool
    }

    public var setup: Setup
    public var jsonDecoder: Baseline
    /// Raw consume of the JSON records (nil when only protobuf was measured).
    public var rawConsume: Baseline?
    /// Raw consume of the protobuf records, when measured.
    public var protobufRawConsume: Baseline?
    public var runs: [RunResult]
    public var targets: [Target]
    /// Peak RSS of the whole process (`VmHWM` since the last reset), MB.
    public var processPeakRSSMegabytes: Double?

    /// The report as pretty-printed JSON with sorted keys.
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// The report for people: the setup, the baselines, one row per configuration, RSS and the targets.
    public var table: String {
        var lines: [String] = []
        let s = setup
        lines.append("distilld bench: \(s.samples.grouped) samples/config, D=\(s.features) C=\(s.classes) "
                     + "teachers=\(s.teacherVersions) slices=\(s.slices) B=\(s.replicates) windows=\(s.windows)")
        lines.append("  labels \(Int(s.labelRate * 100))% (\(Int(s.lateLabelShare * 100))% of them late), "
                     + "event rate \(Int(s.eventRate)) samples/event-s, \(s.partitions) partitions, "
                     + String(format: "state.interval %.0f s, ", s.stateIntervalSeconds)
                     + String(format: "%.0f", s.meanRecordBytes) + " B/record (\(s.compression))"
                     + (s.meanProtobufRecordBytes.map { String(format: " (protobuf %.0f B)", $0) } ?? "")
                     + ", broker \(s.broker), \(s.cpus) CPUs")
        if let pinning = s.pinning { lines.append("  CPUs: \(pinning)") }
        lines.append("")
        lines.append(row(["configuration", "samples/s", "vs raw", "vs JSONDecoder", "p50 ms", "p99 ms",
                          "at rate", "peak RSS MB"]))
        lines.append(row(["JSONDecoder (baseline)", jsonDecoder.samplesPerSecond.grouped, "", "1.00×",
                          "", "", "", ""]))
        for raw in [rawConsume, protobufRawConsume].compactMap({ $0 }) {
            lines.append(row([raw.name == "raw consume" ? "raw consume (baseline)" : raw.name,
                              raw.samplesPerSecond.grouped, "1.00×",
                              ratio(raw.samplesPerSecond / jsonDecoder.samplesPerSecond), "", "", "", ""]))
        }
        for r in runs {
            lines.append(row([
                r.name, r.samplesPerSecond.grouped, r.vsRawConsume.map(ratio) ?? "",
                r.vsJSONDecoder.map(ratio) ?? "",
                r.latency.map { String(format: "%.1f", $0.p50Milliseconds) } ?? "",
                r.latency.map { String(format: "%.1f", $0.p99Milliseconds) } ?? "",
                r.latency.map { $0.rate.grouped } ?? "",
                r.peakRSSMegabytes.map { String(format: "%.0f", $0) } ?? "n/a",
            ]))
        }
        lines.append("")
        for r in runs {
            var detail = "  \(r.name): processed \(r.processed.grouped) of \(r.produced.grouped) in "
                + String(format: "%.2f s", r.seconds)
            if r.preloaded {
                detail += " (all produced before the consumer started)"
            } else if r.producerWaitedSeconds < 0.05 {
                detail += " (the producer never waited for the consumer: it may have set the pace)"
            } else {
                detail += String(format: " (the producer waited %.1f s for the consumer)", r.producerWaitedSeconds)
            }
            if !r.rss.isEmpty {
                detail += "; RSS " + r.rss.map { "\($0.samples.grouped): \(String(format: "%.0f", $0.megabytes)) MB" }
                    .joined(separator: ", ")
            }
            if !r.outputs.isEmpty {
                detail += "; outputs " + r.outputs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                    .joined(separator: " ")
            }
            if let x = r.vsJSONFormat { detail += "; " + ratio(x) + " the same configuration on JSON records" }
            if r.unexpectedDeadLetters > 0 { detail += "; UNEXPECTED dead letters \(r.unexpectedDeadLetters)" }
            if r.processed < r.produced {
                let c = r.daemonCounters ?? [:]
                detail += "; NOT PROCESSED \((r.produced - r.processed).grouped): late \((c["late"] ?? 0).grouped), "
                    + "duplicate \((c["duplicate"] ?? 0).grouped), the rest never read (dropped by the broker's "
                    + "retention before the pipeline read them)"
            }
            if let state = r.stateMegabytes, let total = state["total"] {
                detail += String(format: "; engine state %.1f MB", total)
                    + (r.stateEncodeMilliseconds.map { String(format: " encoded in %.0f ms", $0) } ?? "") + " ("
                    + state.filter { $0.key != "total" }.sorted { $0.value > $1.value }
                        .map { String(format: "%@ %.1f", $0.key, $0.value) }.joined(separator: ", ") + ")"
            }
            lines.append(detail)
            if let c = r.checkpointCost {
                lines.append(String(format: "    checkpoint of that state (%.1f MB file): streamed into the file +%.1f MB "
                                    + "RSS at its peak in %.0f ms; encoded whole first +%.1f MB in %.0f ms",
                                    c.fileMegabytes, c.streamedAddedMegabytes, c.streamedMilliseconds,
                                    c.wholeAddedMegabytes, c.wholeMilliseconds))
            }
            if let t = r.recordTimes {
                lines.append("    per record: p50 \(us(t.p50Microseconds)) p99 \(us(t.p99Microseconds)) "
                             + "p99.9 \(us(t.p999Microseconds)) max \(us(t.maxMicroseconds)); over 1 ms: \(t.over1ms) "
                             + "(closing windows \(t.over1msClosingWindows), first after a state snapshot "
                             + "\(t.over1msAfterSnapshot), a snapshot every \(t.snapshotEvery.grouped) records); "
                             + "slowest: " + t.slowest.map {
                                 us($0.microseconds) + ($0.outputs > 0 ? " (\($0.outputs) outputs)" : "")
                                     + ($0.afterSnapshot ? " (after a snapshot)" : "")
                             }.joined(separator: ", "))
            }
            if let l = r.latency {
                lines.append("    latency: \(l.probes) probes at \(l.rate.grouped)/s (achieved "
                             + "\(l.achievedRate.grouped)/s): p50 \(ms(l.p50Milliseconds)) "
                             + "p90 \(ms(l.p90Milliseconds)) p99 \(ms(l.p99Milliseconds)) "
                             + "p99.9 \(ms(l.p999Milliseconds)) max \(ms(l.maxMilliseconds)); "
                             + l.measures)
                if let busy = l.cpuBusyPercent {
                    lines.append("    CPUs busy during the latency phase: " + busy.sorted { $0.key < $1.key }
                        .map { String(format: "%@ %.0f%%", $0.key, $0.value) }.joined(separator: ", "))
                }
                if let peak = l.peakRSSMegabytes {
                    lines.append(String(format: "    peak RSS during the latency phase: %.0f MB, %.0f MB at its start "
                                        + "(no backlog: librdkafka's prefetch queue stays short)",
                                        peak, l.startRSSMegabytes ?? 0))
                }
            }
        }
        if !targets.isEmpty {
            lines.append("")
            lines.append("issue 6 targets:")
            for t in targets {
                lines.append("  \(t.met ? "met   " : "MISSED") \(t.name): \(t.measured) (target \(t.target))")
            }
        }
        return lines.joined(separator: "\n")
    }

    private func row(_ cells: [String]) -> String {
        let widths = [24, 11, 8, 15, 8, 8, 10, 11]
        return zip(cells, widths).enumerated().map { i, pair in
            let (cell, width) = pair
            let pad = String(repeating: " ", count: max(0, width - cell.count))
            return i == 0 ? cell + pad : pad + cell
        }.joined(separator: " ")
    }

    private func ratio(_ x: Double) -> String { String(format: "%.2f×", x) }
    private func ms(_ x: Double) -> String { String(format: "%.1f ms", x) }
    private func us(_ x: Double) -> String {
        x >= 1_000 ? String(format: "%.1f ms", x / 1_000) : String(format: "%.0f µs", x)
    }
}

extension Double {
    /// Rounded, with thousands separators.
    var grouped: String { Int(self.rounded()).grouped }
}

extension Int {
    /// With thousands separators: `1,234,567`.
    var grouped: String {
        let digits = String(Swift.abs(self))
        var out = ""
        for (n, ch) in digits.enumerated() {
            if n > 0 && (digits.count - n) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return self < 0 ? "-" + out : out
    }
}
