#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Metrics
import class Prometheus.PrometheusCollectorRegistry
import struct Prometheus.PrometheusMetricsFactory
import Synchronization

// MARK: - SampleOutcome

/// What became of one input sample; the value of the `outcome` label of `distilld_samples_total`.
public enum SampleOutcome: String, Sendable, CaseIterable {
    /// Decoded, valid and added to its window.
    case ingested
    /// Refused and published to the dead-letter topic.
    case deadLetter = "dead_letter"
    /// Already seen (same sample id); dropped.
    case duplicate
    /// Behind the watermark by more than the allowed lateness; dropped.
    case late
    /// Held back, waiting for its label or teacher.
    case parked
}

// MARK: - DistillMetrics

/// The daemon's Prometheus metrics, behind a typed API so the pipeline never spells a metric name or a label.
///
/// Instruments are swift-metrics types created through a `PrometheusMetricsFactory` passed explicitly, never through
/// `MetricsSystem.bootstrap`, so several instances (one per test) can live in one process. Everything lands in
/// `registry`, which ``render()`` turns into the Prometheus text format 0.0.4.
///
/// Labels that carry values from the data or the configuration (`reason`, `group`, `type`, `topic`, ...) are capped
/// at ``labelSetLimit`` distinct label sets per metric; later ones are folded into the value ``overflowLabelValue``.
/// Every label set is a time series held in memory here and in Prometheus for ever: one bad input field echoed into
/// a label would otherwise grow both without bound and make scrapes slow. A gauge folded into `other` shows only the
/// last value written to it: seeing `other` at all means the cap was hit.
public final class DistillMetrics: Sendable {
    /// Default number of distinct label sets a labelled metric keeps before folding new ones into `other`.
    public static let defaultLabelSetLimit = 100
    /// The label value that stands for every label set past the cap.
    public static let overflowLabelValue = "other"

    /// Where every instrument is registered; the `/metrics` endpoint emits it.
    public let registry: PrometheusCollectorRegistry
    /// Distinct label sets kept per labelled metric.
    public let labelSetLimit: Int

    private let factory: PrometheusMetricsFactory
    private let nowMilliseconds: @Sendable () -> Int64
    private let dynamic: Mutex<DynamicInstruments>

    // Unlabelled or fixed-label instruments, created once: the hot path touches only their atomics.
    private let samplesByOutcome: [SampleOutcome: Counter]
    private let lateSamples: Counter
    private let openWindows: Gauge
    private let studentUpdates: Counter
    private let checkpointWrite: Metrics.Timer
    private let deliveryFailures: Counter
    private let commitFailures: Counter
    private let checkpointFailures: Counter
    private let merging: Gauge
    private let conflictingPartials: Counter

    /// Creates the instruments in a registry of their own.
    ///
    /// - Parameters:
    ///   - registry: Where to register; a fresh one by default so instances never share series.
    ///   - labelSetLimit: Distinct label sets kept per labelled metric (at least 1).
    ///   - nowMilliseconds: Wall clock in milliseconds since the Unix epoch; `distilld_checkpoint_age_seconds` is
    ///     computed from it at each scrape. Tests pass a fixed clock.
    public init(
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        labelSetLimit: Int = DistillMetrics.defaultLabelSetLimit,
        nowMilliseconds: @escaping @Sendable () -> Int64 = DistillMetrics.wallClockMilliseconds
    ) {
        precondition(labelSetLimit >= 1, "labelSetLimit must be at least 1")
        self.registry = registry
        self.labelSetLimit = labelSetLimit
        self.nowMilliseconds = nowMilliseconds

        var factory = PrometheusMetricsFactory(registry: registry)
        // Checkpoints write a few MB and fsync twice: milliseconds when healthy, seconds on a struggling disk.
        factory.durationHistogramBuckets[MetricName.checkpointWrite] = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
            .seconds(30),
        ]
        self.factory = factory

        var byOutcome: [SampleOutcome: Counter] = [:]
        for outcome in SampleOutcome.allCases {
            byOutcome[outcome] = Counter(
                label: MetricName.samples,
                dimensions: [("outcome", outcome.rawValue)],
                factory: factory
            )
        }
        self.samplesByOutcome = byOutcome
        self.lateSamples = Counter(label: MetricName.lateSamples, factory: factory)
        self.openWindows = Gauge(label: MetricName.openWindows, factory: factory)
        self.studentUpdates = Counter(label: MetricName.studentUpdates, factory: factory)
        self.checkpointWrite = Metrics.Timer(label: MetricName.checkpointWrite, factory: factory)
        self.deliveryFailures = Counter(label: MetricName.deliveryFailures, factory: factory)
        self.commitFailures = Counter(label: MetricName.commitFailures, factory: factory)
        self.checkpointFailures = Counter(label: MetricName.checkpointFailures, factory: factory)
        self.merging = Gauge(label: MetricName.merging, factory: factory)
        self.conflictingPartials = Counter(label: MetricName.conflictingPartials, factory: factory)
        self.dynamic = Mutex(DynamicInstruments(limit: labelSetLimit))
    }

    // MARK: - Samples

    /// Counts `count` samples with the given outcome in `distilld_samples_total{outcome}`.
    public func samples(_ outcome: SampleOutcome, count: Int = 1) {
        guard count > 0 else { return }
        samplesByOutcome[outcome]?.increment(by: Int64(count))
    }

    /// Counts `count` samples added to their window.
    public func samplesIngested(_ count: Int = 1) {
        samples(.ingested, count: count)
    }

    /// Counts `count` samples dropped as duplicates.
    public func samplesDuplicate(_ count: Int = 1) {
        samples(.duplicate, count: count)
    }

    /// Counts `count` samples parked until their label or teacher arrives.
    public func samplesParked(_ count: Int = 1) {
        samples(.parked, count: count)
    }

    /// Counts one sample that arrived behind the watermark in `distilld_late_samples_total`.
    ///
    /// - Parameter dropped: Whether it was refused as too late; if so it is also counted as
    ///   `distilld_samples_total{outcome="late"}`. A late sample still within the allowed lateness is admitted, and
    ///   the caller counts it as ingested.
    public func lateSample(dropped: Bool) {
        lateSamples.increment()
        if dropped {
            samples(.late)
        }
    }

    /// Counts one record sent to the dead-letter topic, by reason (`not_finite`, `schema`, ...).
    ///
    /// A dead-lettered record is a sample the pipeline refused, so this also counts
    /// `distilld_samples_total{outcome="dead_letter"}`: one call per record.
    public func deadLetter(reason: String) {
        counter(MetricName.deadLetters, ("reason", reason)).increment()
        samples(.deadLetter)
    }

    // MARK: - Consumer

    /// Sets `distilld_consumer_lag{topic,partition}`: messages between the committed offset and the high watermark.
    public func setLag(topic: String, partition: Int32, lag: Int64) {
        gauge(MetricName.consumerLag, ("topic", topic), ("partition", String(partition))).record(max(lag, 0))
    }

    /// Removes the lag series of a partition this consumer no longer owns, so a rebalance leaves no stale lag.
    public func removeLag(topic: String, partition: Int32) {
        let labels = [("topic", topic), ("partition", String(partition))]
        let removed = dynamic.withLock { $0.removeGauge(MetricName.consumerLag, labels: labels) }
        removed?.destroy()
    }

    // MARK: - Windows, triggers, alerts

    /// Sets `distilld_open_windows`: windows not yet closed by the watermark.
    public func setOpenWindows(_ count: Int) {
        openWindows.record(count)
    }

    /// Sets `distilld_trigger_state{trigger,group}` to 1 while an episode is active, 0 otherwise.
    public func setTriggerState(trigger: String, group: String, active: Bool) {
        gauge(MetricName.triggerState, ("trigger", trigger), ("group", group)).record(active ? 1 : 0)
    }

    /// Counts one alert emitted, by type, in `distilld_alerts_total{type}`.
    public func alertEmitted(type: String) {
        counter(MetricName.alerts, ("type", type)).increment()
    }

    // MARK: - Student

    /// Sets `distilld_kd_loss`: the latest knowledge-distillation loss of the online student, in nats.
    ///
    /// Absent until the first value: a 0 before the student trains would read as a perfect fit.
    public func setKDLoss(_ loss: Double) {
        gauge(MetricName.kdLoss).record(loss)
    }

    /// Counts `count` optimizer steps of the student; `rate(distilld_student_updates_total[1m])` is updates/s.
    public func studentUpdated(_ count: Int = 1) {
        guard count > 0 else { return }
        studentUpdates.increment(by: Int64(count))
    }

    // MARK: - Checkpoints

    /// Records one successful checkpoint write: its duration in `distilld_checkpoint_write_seconds` and its time,
    /// from which `distilld_checkpoint_age_seconds` is computed at each scrape.
    ///
    /// - Parameters:
    ///   - duration: Temp file to directory `fsync`.
    ///   - writtenAtMilliseconds: When it completed, milliseconds since the Unix epoch; now by default.
    public func checkpointWritten(duration: Duration, writtenAtMilliseconds: Int64? = nil) {
        checkpointWrite.recordNanoseconds(Self.nanoseconds(duration))
        let at = writtenAtMilliseconds ?? nowMilliseconds()
        dynamic.withLock { $0.lastCheckpointMilliseconds = at }
    }

    /// Counts a checkpoint that could not be written (full or read-only state directory...): nothing was committed.
    public func checkpointFailed() {
        checkpointFailures.increment()
    }

    /// Records the write time of the checkpoint restored at start, so the age is right before the first new write.
    public func checkpointRestored(writtenAtMilliseconds: Int64) {
        dynamic.withLock { $0.lastCheckpointMilliseconds = writtenAtMilliseconds }
    }

    // MARK: - Outputs

    /// Counts `count` records published to an output topic in `distilld_output_records_total{topic}`.
    public func outputRecords(topic: String, count: Int = 1) {
        guard count > 0 else { return }
        counter(MetricName.outputRecords, ("topic", topic)).increment(by: Int64(count))
    }

    /// Counts one output record the producer finally failed to deliver.
    public func deliveryFailed() {
        deliveryFailures.increment()
    }

    /// Counts an offset commit the group refused or could not take (the state checkpoint already holds them).
    public func commitFailed() {
        commitFailures.increment()
    }

    /// Scale-out: whether this instance holds the merge lease (1) or not (0).
    public func setMerging(_ on: Bool) {
        merging.record(on ? 1 : 0)
    }

    /// Scale-out: partials the merger refused (late at the merge, or disagreeing with a pane already folded).
    public func partialsConflicting(_ count: Int) {
        if count > 0 { conflictingPartials.increment(by: Int64(count)) }
    }

    // MARK: - Exposition

    /// The Prometheus text format 0.0.4 of every instrument, with the checkpoint age brought up to date.
    public func render() -> String {
        refreshCheckpointAge()
        return registry.emitToString()
    }

    /// The same as ``render()`` as UTF-8 bytes, for the HTTP response body.
    public func renderBytes() -> [UInt8] {
        refreshCheckpointAge()
        return registry.emitToBuffer()
    }

    /// Milliseconds since the Unix epoch from the system's real-time clock.
    @Sendable
    public static func wallClockMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    // MARK: - Private

    private func refreshCheckpointAge() {
        // Absent until the first checkpoint: a 0 would read as "just written".
        guard let last = dynamic.withLock({ $0.lastCheckpointMilliseconds }) else { return }
        gauge(MetricName.checkpointAge).record(Double(max(nowMilliseconds() - last, 0)) / 1000)
    }

    private func counter(_ name: String, _ labels: (String, String)...) -> Counter {
        dynamic.withLock { state in
            let admitted = state.admit(name, labels: labels)
            return state.counter(name, labels: admitted) {
                Counter(label: name, dimensions: admitted, factory: factory)
            }
        }
    }

    private func gauge(_ name: String, _ labels: (String, String)...) -> Gauge {
        dynamic.withLock { state in
            let admitted = state.admit(name, labels: labels)
            return state.gauge(name, labels: admitted) {
                Gauge(label: name, dimensions: admitted, factory: factory)
            }
        }
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return seconds < 0 ? .min : .max }
        return scaled.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }
}

// MARK: - Names

/// Metric names in one place; units are in the names as Prometheus asks (`_seconds`, `_total`).
enum MetricName {
    static let samples = "distilld_samples_total"
    static let deadLetters = "distilld_dead_letters_total"
    static let consumerLag = "distilld_consumer_lag"
    static let lateSamples = "distilld_late_samples_total"
    static let openWindows = "distilld_open_windows"
    static let triggerState = "distilld_trigger_state"
    static let alerts = "distilld_alerts_total"
    static let kdLoss = "distilld_kd_loss"
    static let studentUpdates = "distilld_student_updates_total"
    static let checkpointAge = "distilld_checkpoint_age_seconds"
    static let checkpointWrite = "distilld_checkpoint_write_seconds"
    static let outputRecords = "distilld_output_records_total"
    static let deliveryFailures = "distilld_delivery_failures_total"
    static let commitFailures = "distilld_commit_failures_total"
    static let checkpointFailures = "distilld_checkpoint_failures_total"
    static let merging = "distilld_merging"
    static let conflictingPartials = "distilld_partials_conflicting_total"
}

// MARK: - DynamicInstruments

/// Labelled instruments created on first use, and the label sets admitted under the cap; guarded by one lock.
struct DynamicInstruments {
    let limit: Int
    private var admitted: [String: Set<[String]>] = [:]
    private var counters: [String: [[String]: Counter]] = [:]
    private var gauges: [String: [[String]: Gauge]] = [:]
    var lastCheckpointMilliseconds: Int64?

    init(limit: Int) {
        self.limit = limit
    }

    /// The labels to use: unchanged if already admitted or under the cap, else every value replaced by `other`.
    mutating func admit(_ name: String, labels: [(String, String)]) -> [(String, String)] {
        let values = labels.map(\.1)
        if admitted[name, default: []].contains(values) {
            return labels
        }
        guard admitted[name, default: []].count < limit else {
            return labels.map { ($0.0, DistillMetrics.overflowLabelValue) }
        }
        admitted[name, default: []].insert(values)
        return labels
    }

    mutating func counter(_ name: String, labels: [(String, String)], make: () -> Counter) -> Counter {
        let key = labels.map(\.1)
        if let existing = counters[name]?[key] {
            return existing
        }
        let created = make()
        counters[name, default: [:]][key] = created
        return created
    }

    mutating func gauge(_ name: String, labels: [(String, String)], make: () -> Gauge) -> Gauge {
        let key = labels.map(\.1)
        if let existing = gauges[name]?[key] {
            return existing
        }
        let created = make()
        gauges[name, default: [:]][key] = created
        return created
    }

    /// Forgets a gauge and frees its slot under the cap; returns it so the caller can unregister it.
    mutating func removeGauge(_ name: String, labels: [(String, String)]) -> Gauge? {
        let key = labels.map(\.1)
        guard let gauge = gauges[name]?.removeValue(forKey: key) else { return nil }
        admitted[name]?.remove(key)
        return gauge
    }
}
