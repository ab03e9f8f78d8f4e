// MARK: - The statistics engine: all named windows over all groups

/// Settings of the windowed statistics. Defaults follow the issue: B = 64, 15 bins, 95 % intervals,
/// `fast` (1 h / 1 min) and `drift` (14 d / 1 h) windows, a daily calibration window.
public struct DistillStatisticsConfig: Sendable, Equatable, Codable {
    /// Number of classes C.
    public var classes: Int
    /// Bootstrap replicates B (default 64).
    public var replicates: Int
    /// Equal-width ECE bins (default 15).
    public var bins: Int
    /// Confidence level of every interval (default 0.95).
    public var confidenceLevel: Double
    /// Teacher/student statistics windows (default `fast`, `drift`).
    public var windows: [WindowSpec]
    /// Calibration-check windows (default one tumbling day, 5 min grace, named `calibration`).
    public var calibrationWindows: [WindowSpec]
    /// Bottom-k sample size per model version and pane for T* and adaptive ECE (default 2048).
    public var calibrationSampleCapacity: Int
    /// Keep calibration statistics per slice as well as pooled (default false: pooled only).
    public var calibrationPerSlice: Bool

    /// Creates a configuration with the documented defaults.
    public init(classes: Int, replicates: Int = 64, bins: Int = CalibrationMetrics.defaultBins,
                confidenceLevel: Double = 0.95, windows: [WindowSpec] = [.fast, .drift],
                calibrationWindows: [WindowSpec] = [
                    .eventTime("calibration", size: WindowSpec.day, slide: WindowSpec.day,
                               grace: 5 * WindowSpec.minute),
                ],
                calibrationSampleCapacity: Int = 2048, calibrationPerSlice: Bool = false) {
        self.classes = classes
        self.replicates = replicates
        self.bins = bins
        self.confidenceLevel = confidenceLevel
        self.windows = windows
        self.calibrationWindows = calibrationWindows
        self.calibrationSampleCapacity = calibrationSampleCapacity
        self.calibrationPerSlice = calibrationPerSlice
    }

    /// Checks every setting.
    public func validate() throws(DistillConfigError) {
        if classes < 2 { throw DistillConfigError(setting: "model.classes", message: "must be >= 2") }
        if replicates < 0 || replicates > 10_000 {
            throw DistillConfigError(setting: "statistics.replicates", message: "must be in 0...10000")
        }
        if bins < 1 { throw DistillConfigError(setting: "statistics.bins", message: "must be >= 1") }
        if !(confidenceLevel > 0 && confidenceLevel < 1) {
            throw DistillConfigError(setting: "statistics.confidence_level", message: "must be in (0, 1)")
        }
        if calibrationSampleCapacity < 0 {
            throw DistillConfigError(setting: "calibration.sample_capacity", message: "must be >= 0")
        }
        var names = Set<String>()
        for w in windows + calibrationWindows {
            try w.validate()
            if !names.insert(w.name).inserted {
                throw DistillConfigError(setting: "windows.\(w.name)", message: "window names must be unique")
            }
        }
    }
}

/// Whose predictions a calibration aggregate describes.
public struct CalibrationKey: Hashable, Sendable, Codable, CustomStringConvertible {
    /// Teacher or served student.
    public enum Role: String, Sendable, Codable {
        /// A teacher version.
        case teacher
        /// The served student version.
        case student
    }
    /// Model version.
    public var version: String
    /// Role of the version.
    public var role: Role
    /// Slice, or nil for all slices pooled.
    public var slice: String?

    /// Creates a calibration key.
    public init(version: String, role: Role, slice: String? = nil) {
        self.version = version
        self.role = role
        self.slice = slice
    }

    /// `role:version[@slice]`.
    public var description: String { "\(role.rawValue):\(version)" + (slice.map { "@\($0)" } ?? "") }
}

/// A closed teacher/student statistics window.
public typealias DistillWindow = ClosedWindow<DistillGroupKey, DistillPaneStats>
/// A closed calibration window.
public typealias CalibrationWindow = ClosedWindow<CalibrationKey, CalibrationStats>

/// Everything closed by one call to `DistillWindowSet.closeReady()`.
public struct WindowEmissions: Sendable {
    /// Closed teacher/student windows, by window then oldest first.
    public var statistics: [DistillWindow] = []
    /// Closed calibration windows.
    public var calibration: [CalibrationWindow] = []

    /// Creates an empty emission list.
    public init() {}
}

/// All configured windows over all groups: the object the daemon feeds and checkpoints (`Codable`).
///
/// Call `ingest(_:groups:)` for each validated sample (after any label join), then `closeReady()`
/// to collect closed windows; `advanceWatermark(to:)` moves idle event-time windows forward.
public struct DistillWindowSet: Sendable, Codable {
    /// The configuration this set was built with (or reshaped to).
    public private(set) var config: DistillStatisticsConfig
    var timeWindows: [EventTimeWindows<DistillGroupKey, DistillPaneStats>] = []
    var countWindows: [CountWindows<DistillGroupKey, DistillPaneStats>] = []
    var calibrationTime: [EventTimeWindows<CalibrationKey, CalibrationStats>] = []
    var calibrationCount: [CountWindows<CalibrationKey, CalibrationStats>] = []

    /// Labeled samples folded in since the calibration samples were last pruned (not encoded).
    var labeledSincePrune = 0
    /// Labeled samples between two prunings of the calibration samples (`pruneCalibrationSamples()`).
    var calibrationPrunePeriod = 4_096

    enum CodingKeys: String, CodingKey { case config, timeWindows, countWindows, calibrationTime, calibrationCount }

    /// Creates the windows of `config` (validate it first).
    public init(config: DistillStatisticsConfig) {
        self.config = config
        for spec in config.windows {
            switch spec.kind {
            case .eventTime: timeWindows.append(EventTimeWindows(spec: spec))
            case .count: countWindows.append(CountWindows(spec: spec))
            }
        }
        for spec in config.calibrationWindows {
            switch spec.kind {
            case .eventTime: calibrationTime.append(EventTimeWindows(spec: spec))
            case .count: calibrationCount.append(CountWindows(spec: spec))
            }
        }
    }

    /// Total late samples per event-time window name.
    public var lateCounts: [String: Int] {
        var out: [String: Int] = [:]
        for w in timeWindows { out[w.name] = w.lateTotal }
        for w in calibrationTime { out[w.name] = w.lateTotal }
        return out
    }

    /// Per-partition partial panes not yet sealed, over every event-time window (bounded by partitions × skew).
    public var openPaneCount: Int {
        timeWindows.reduce(0) { $0 + $1.openPaneCount } + calibrationTime.reduce(0) { $0 + $1.openPaneCount }
    }

    /// Folds one sample into every window, under each group in `groups` whose filters match it.
    /// Returns the number of windows that rejected it as late.
    ///
    /// `contribution` allows a two-step label join: ingest `.unlabeled` on arrival, then the same sample
    /// (same id and event time, label filled in) with `.labeled` when the label arrives; a window's
    /// `samples` counts ingest calls. Calibration windows only see labeled contributions.
    ///
    /// `partition` is the input partition the sample was read from: event-time panes are kept per partition until
    /// sealed (see `EventTimeWindows`). Count windows follow arrival order and are not split by partition.
    @discardableResult
    public mutating func ingest(_ sample: DistillSample, groups: [DistillGroupKey], partition: Int32 = 0,
                                contribution: SampleContribution = .all) -> Int {
        var weights = BootstrapWeights(replicates: config.replicates)
        weights.reset(idHash: StableHash.id(sample.id))
        return ingest(sample, groups: groups, weights: weights, partition: partition, contribution: contribution)
    }

    /// As `ingest(_:groups:partition:contribution:)` with precomputed bootstrap weights (reuse one buffer across
    /// samples).
    @discardableResult
    public mutating func ingest(_ sample: DistillSample, groups: [DistillGroupKey], weights: BootstrapWeights,
                                partition: Int32 = 0, contribution: SampleContribution = .all) -> Int {
        let matching = groups.filter { $0.matches(sample) }
        let c = config.classes, b = config.replicates, bins = config.bins
        // Softmaxes, KL and top-1s of this sample: computed at its first pane, reused by every other pane and group.
        var derived = DistillSampleDerived()
        func updateStats(_ panes: inout [DistillGroupKey: DistillPaneStats]) {
            for key in matching {
                panes[key, default: DistillPaneStats(classes: c, replicates: b, bins: bins)]
                    .add(sample, key: key, weights: weights, contribution: contribution, derived: &derived)
            }
        }
        var late = 0
        for i in timeWindows.indices
        where timeWindows[i].ingest(eventTime: sample.timestamp, partition: partition, updateStats) == .late {
            late += 1
        }
        for i in countWindows.indices { countWindows[i].ingest(eventTime: sample.timestamp, updateStats) }
        if let label = sample.label, contribution.contains(.labeled),
           !(calibrationTime.isEmpty && calibrationCount.isEmpty) {
            let idHash = StableHash.id(sample.id)
            let capacity = config.calibrationSampleCapacity
            let perSlice = config.calibrationPerSlice
            func updateCalibration(_ panes: inout [CalibrationKey: CalibrationStats]) {
                func add(_ key: CalibrationKey, _ logits: UnsafeBufferPointer<Float>) {
                    panes[key, default: CalibrationStats(classes: c, replicates: b, bins: bins,
                                                         sampleCapacity: capacity)]
                        .add(logits: logits, label: label, idHash: idHash, weights: weights)
                }
                for t in sample.teacherVersions.indices {
                    sample.withTeacherLogits(at: t) { z in
                        add(CalibrationKey(version: sample.teacherVersions[t], role: .teacher), z)
                        if perSlice, let s = sample.slice {
                            add(CalibrationKey(version: sample.teacherVersions[t], role: .teacher, slice: s), z)
                        }
                    }
                }
                if let sv = sample.studentVersion {
                    sample.studentLogits.withUnsafeBufferPointer { z in
                        add(CalibrationKey(version: sv, role: .student), z)
                        if perSlice, let s = sample.slice {
                            add(CalibrationKey(version: sv, role: .student, slice: s), z)
                        }
                    }
                }
            }
            for i in calibrationTime.indices
            where calibrationTime[i].ingest(eventTime: sample.timestamp, partition: partition, updateCalibration)
                == .late {
                late += 1
            }
            for i in calibrationCount.indices {
                calibrationCount[i].ingest(eventTime: sample.timestamp, updateCalibration)
            }
            labeledSincePrune += 1
            if labeledSincePrune >= calibrationPrunePeriod {
                labeledSincePrune = 0
                pruneCalibrationSamples()
            }
        }
        return late
    }

    /// Shrinks the bottom-k calibration samples of open panes to what their pane can still use.
    ///
    /// Each input partition keeps its own partial of an open pane, so with P partitions a pane held P bottom-k
    /// samples of `calibrationSampleCapacity` each, P times what the sealed pane keeps: at 32 partitions and five
    /// model versions, two thirds of the windows' state. For each open pane and key this finds the
    /// `capacity`-th smallest hash over every partition's sample and prunes each partition's sample above it
    /// (`LogitSample.prune(above:)`): the pane's merged sample, and so every figure, is unchanged, and a pane's
    /// samples together hold about `capacity` entries. Not in per-partition mode (scale-out workers), whose
    /// partials move between instances one partition at a time.
    mutating func pruneCalibrationSamples() {
        let capacity = config.calibrationSampleCapacity
        guard capacity > 0 else { return }
        for i in calibrationTime.indices where !calibrationTime[i].perPartition {
            calibrationTime[i].withOpenPartials { _, partials in
                guard partials.count > 1 else { return }
                var keys = Set<CalibrationKey>()
                for groups in partials { keys.formUnion(groups.keys) }
                for key in keys {
                    var hashes: [UInt64] = []
                    for groups in partials { if let stats = groups[key] { hashes += stats.sample.hashes } }
                    guard hashes.count > capacity else { continue }
                    hashes.sort()
                    let bound = hashes[capacity - 1]
                    guard bound < hashes[hashes.count - 1] else { continue }
                    for j in partials.indices where partials[j][key] != nil {
                        partials[j][key]!.pruneSample(above: bound)
                    }
                }
            }
        }
    }

    /// Entries held by the bottom-k calibration samples of open panes, over every partition.
    var openCalibrationSampleEntries: Int {
        calibrationTime.reduce(0) { total, w in
            total + w.openPanes.values.reduce(0) { t, panes in
                t + panes.values.reduce(0) { $0 + $1.groups.values.reduce(0) { $0 + $1.sample.count } }
            }
        }
    }

    /// Makes every event-time window's watermark follow the input watermark (see `setInputWatermark(_:)`).
    public mutating func followInputWatermark() {
        for i in timeWindows.indices { timeWindows[i].followInputWatermark() }
        for i in calibrationTime.indices { calibrationTime[i].followInputWatermark() }
    }

    /// Sets the event time every input partition has reached (ms); each window's watermark is this minus its grace.
    public mutating func setInputWatermark(_ eventTime: Int64) {
        for i in timeWindows.indices { timeWindows[i].setInputWatermark(eventTime) }
        for i in calibrationTime.indices { calibrationTime[i].setInputWatermark(eventTime) }
    }

    /// Moves every event-time window's watermark to at least `eventTime` (ms).
    public mutating func advanceWatermark(to eventTime: Int64) {
        for i in timeWindows.indices { timeWindows[i].advanceWatermark(to: eventTime) }
        for i in calibrationTime.indices { calibrationTime[i].advanceWatermark(to: eventTime) }
    }

    /// The same statistics with new window bounds, keeping every pane (for a config reload). Only an event-time
    /// window's size, slide and grace may change, and only while its pane size (gcd of size and slide) stays the
    /// same; anything else throws, naming the setting, and this set is left as it was.
    public func reshaped(to new: DistillStatisticsConfig) throws(DistillConfigError) -> DistillWindowSet {
        var shapeless = new
        shapeless.windows = config.windows
        shapeless.calibrationWindows = config.calibrationWindows
        guard shapeless == config else {
            throw DistillConfigError(setting: "statistics",
                                     message: "classes, replicates, bins, confidence level and calibration sampling "
                                         + "cannot change while running")
        }
        func reshape<K, A>(_ windows: [EventTimeWindows<K, A>], from old: [WindowSpec], to specs: [WindowSpec],
                           setting: String, named: Bool) throws(DistillConfigError) -> [EventTimeWindows<K, A>] {
            guard old.map(\.name) == specs.map(\.name) else {
                throw DistillConfigError(setting: setting, message: "windows cannot be added, removed or renamed "
                                             + "while running (was \(old.map(\.name)), now \(specs.map(\.name)))")
            }
            var out: [EventTimeWindows<K, A>] = []
            var next = windows.makeIterator()
            for (was, spec) in zip(old, specs) {
                switch (was.kind, spec.kind) {
                case (.eventTime, .eventTime):
                    let current = next.next()!
                    guard let reshaped = current.reshaped(to: spec) else {
                        throw DistillConfigError(
                            setting: named ? "\(setting).\(spec.name)" : setting,
                            message: "the pane size (gcd of size and slide) would change from \(current.paneSize) ms; "
                                + "only changes that keep it can keep the window's state")
                    }
                    out.append(reshaped)
                case (.count, .count) where was == spec:
                    continue
                default:
                    throw DistillConfigError(setting: named ? "\(setting).\(spec.name)" : setting,
                                             message: "count windows and window kinds cannot change while running")
                }
            }
            return out
        }
        var set = self
        set.config = new
        set.timeWindows = try reshape(timeWindows, from: config.windows, to: new.windows, setting: "windows",
                                      named: true)
        set.calibrationTime = try reshape(calibrationTime, from: config.calibrationWindows,
                                          to: new.calibrationWindows, setting: "calibration.window", named: false)
        return set
    }

    /// Closes and returns every window instance that is complete.
    public mutating func closeReady() -> WindowEmissions {
        var out = WindowEmissions()
        for i in timeWindows.indices { out.statistics += timeWindows[i].closeReady() }
        for i in countWindows.indices { out.statistics += countWindows[i].closeReady() }
        for i in calibrationTime.indices { out.calibration += calibrationTime[i].closeReady() }
        for i in calibrationCount.indices { out.calibration += calibrationCount[i].closeReady() }
        return out
    }
}
