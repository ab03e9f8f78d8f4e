import Foundation

// MARK: - Output

/// Everything one run measured, printable as a text table or as one JSON object (for the README table).
struct BenchReport: Encodable {
    /// `release` or `debug` (from the `DEBUG` compilation condition).
    var build: String
    /// The `--tag` label.
    var tag: String
    /// The options, for the record.
    var records: Int
    /// Timed repetitions per measurement.
    var repetitions: Int
    /// Minimum seconds per repetition.
    var repetitionSeconds: Double
    /// Samples per second of event time in the window benchmarks.
    var eventRate: Int
    /// Whether `--quick` was given.
    var quick: Bool
    /// Mean record size, bytes.
    var recordBytes: Double = 0
    /// Every measurement, in run order.
    var results: [Measurement] = []
    /// Peak resident set size at the end (VmHWM), KiB.
    var peakRSSKiB: Int?
    /// Wall time of the whole run, seconds.
    var seconds: Double = 0
    /// Fold of every consumed result (printed so the work cannot be optimised away).
    var checksum = ""

    /// Starts a report for `options`.
    init(options: BenchOptions) {
        #if DEBUG
        build = "debug"
        #else
        build = "release"
        #endif
        tag = options.tag
        records = options.records
        repetitions = options.repetitions
        repetitionSeconds = options.repetitionSeconds
        eventRate = options.eventRate
        quick = options.quick
    }

    /// The report as one JSON object (keys sorted).
    func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The report as a text table: wall-clock rate (median, min–max) and its ratio against the baseline, the
    /// median rate over thread CPU time and its ratio, then notes.
    func table() -> String {
        var lines: [String] = []
        let flavour = tag.isEmpty ? build : "\(build), \(tag)"
        lines.append(String(format: "distilld-bench (%@): %d records of %.0f B, %d × ≥ %.2f s per measurement%@",
                            flavour, records, recordBytes, repetitions, repetitionSeconds, quick ? ", QUICK" : ""))
        if build == "debug" { lines.append("WARNING: debug build; build with -c release for meaningful numbers") }
        var group = ""
        for m in results {
            if m.group != group {
                group = m.group
                lines.append("")
                lines.append("== \(group) " + String(repeating: "=", count: 100 - group.count))
                lines.append(pad("measurement", 56) + pad("median /s", 12, left: true)
                             + pad("min – max /s", 24, left: true) + pad("ratio", 8, left: true)
                             + pad("cpu /s", 12, left: true) + pad("ratio", 8, left: true))
            }
            let spread = formatRate(m.min) + " – " + formatRate(m.max)
            let ratio = m.ratio.map { String(format: "%.2f×", $0) } ?? "base"
            let cpuRatio = m.cpuRatio.map { String(format: "%.2f×", $0) } ?? "base"
            lines.append(pad(m.name, 56) + pad(formatRate(m.median), 12, left: true) + pad(spread, 24, left: true)
                         + pad(ratio, 8, left: true) + pad(formatRate(m.cpuMedian), 12, left: true)
                         + pad(cpuRatio, 8, left: true))
            if let b = m.baseline { lines.append("    vs \(b)") }
            for note in m.notes { lines.append("    \(note)") }
        }
        lines.append("")
        let rss = peakRSSKiB.map { String(format: "%.1f MiB", Double($0) / 1024) } ?? "n/a"
        lines.append(String(format: "peak RSS %@, %.1f s, checksum %@", rss, seconds, checksum))
        return lines.joined(separator: "\n")
    }

    /// `text` padded with spaces to `width` columns (right-aligned when `left`).
    func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
        let n = text.count
        if n >= width { return left ? " " + text : text + " " }
        let fill = String(repeating: " ", count: width - n)
        return left ? fill + text : text + fill
    }
}
