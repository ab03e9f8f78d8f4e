import DistillCore
import DistillWire
import Foundation
import KafkaClient

// MARK: - What the engine produces

/// Where an input record came from: enough to dead-letter it and to know which offset it settles.
public struct InputPosition: Sendable, Hashable, Codable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }
}

/// A record that failed validation, with why: the daemon writes it to the dead-letter topic.
public struct RejectedRecord: Sendable, Equatable {
    /// The original bytes, untouched.
    public var bytes: [UInt8]
    public var key: [UInt8]?
    /// A stable machine code, e.g. `not_finite`, `wrong_length`, `unknown_teacher_version`.
    public var reason: String
    /// The offending field, when one is known (e.g. `teachers[1].logits[3]`).
    public var field: String?
    /// A human explanation.
    public var message: String
    public var source: InputPosition
}

/// One thing the engine decided to publish.
public enum EngineOutput: Sendable {
    /// A trigger episode fired or resolved (alerts), or a teacher regressed.
    case decision(TriggerDecision)
    /// A closed window, with every group's figures (intervals, rare classes flagged) and the decisions taken.
    case windowClosed(DistillWindow, reports: [WindowReport])
    /// A calibration check of one model version.
    case calibration(CalibrationCheck)
    /// A record that could not be used.
    case deadLetter(RejectedRecord)
    /// A published online-student checkpoint.
    case studentCheckpoint(StudentCheckpoint)
    /// Scale-out: a pane of a partition this instance owns has ended; the merging instance folds it in.
    case partial(WindowSetPartial)
}

/// Counters the metrics endpoint and progress lines read.
public struct EngineCounters: Sendable, Equatable, Codable {
    public var samplesIn = 0
    public var samplesIngested = 0
    public var deadLetters: [String: Int] = [:]
    public var lateSamples = 0
    public var duplicateSamples = 0
    public var labelsJoined = 0
    public var labelsTooLate = 0
    public var labelsWaiting = 0
    public var samplesParked = 0
    public var windowsClosed = 0
    public var alertsEmitted = 0
    public var alertsSuppressed = 0
    public var studentUpdates = 0
    public var studentCheckpoints = 0
    public var studentCheckpointsBlocked = 0
}

// MARK: - DistillEngine

/// Turns input records into outputs: decoding and validation, the teacher registry, the label join, the windows,
/// the trigger matrix, calibration checks and the online student. No I/O: the daemon feeds it records and
/// publishes what it returns, which keeps every rule here testable without a broker.
///
/// Reprocessing the same records yields the same outputs (event time only, deterministic ids); alerts whose id was
/// already emitted are suppressed, so a replay after a crash sends nothing twice.
public final class DistillEngine {
    /// What part of the work this engine does. `single` is the whole pipeline in one process. With `scale_out`, every
    /// instance runs a `worker` over the partitions it owns, publishing ended panes as partials instead of closing
    /// windows, and the instance holding the merge lease runs a `merger` that folds every partition's partials and
    /// closes the windows: the same windows, triggers and calibration code, split at the pane.
    public enum Role: Sendable, Equatable { case single, worker, merger }

    public let role: Role
    public private(set) var config: DistillConfig
    /// Decodes the `samples` topic in its configured format (`topics.formats.samples`).
    private let sampleDecoder: RecordDecoder
    /// Decodes the `labels` topic in its configured format (`topics.formats.labels`).
    private let labelDecoder: RecordDecoder
    var windows: DistillWindowSet
    var evaluator: TriggerEvaluator
    private(set) var registry: TeacherRegistry
    /// The label join, one buffer per input partition for a worker (a partition's state moves with it), one for all
    /// otherwise (key 0).
    var labelJoins: [Int32: LabelJoinBuffer] = [:]
    /// Each buffer's counts as last added into `counters` (see `countJoins(_:_:)`).
    private var joinCounts: [Int32: LabelJoinCounts] = [:]
    let distiller: OnlineDistiller?
    /// Alert ids already published (fired/resolved episodes), so a replay never publishes one twice.
    var emittedAlerts: Set<String> = []
    /// Ids of the samples seen recently, to ignore duplicates (bounded like the join buffer); per input partition for a
    /// worker (samples are keyed by id, so a duplicate lands on the same partition), one set otherwise (key 0).
    var recentIDs: [Int32: RecentIDs] = [:]
    static let recentIDCapacity = 200_000
    /// Samples whose teacher versions the registry does not know yet, replayed when it learns them.
    var parked: [ParkedSample] = []
    private let maxParked = 10_000
    private var samplesSinceCheckpoint = 0
    /// Largest event time seen per `samples` partition; the windows' watermark follows the slowest of them.
    var partitionEventTime: [Int32: Int64] {
        get { eventTimes }
        set { eventTimes = newValue; activeTimes = nil }
    }
    private var eventTimes: [Int32: Int64] = [:]
    /// Partitions that hold the watermark: assigned and not idle.
    var activePartitions: Set<Int32> = [] { didSet { activeTimes = nil } }
    /// The active partitions' event times by partition number (`Int64.max`: not active, `Int64.min`: no sample yet),
    /// rebuilt when either changes other than by a sample: the watermark is taken per sample, and hashing every
    /// partition each time cost as much as decoding a tenth of the record.
    private var activeTimes: [Int64]?
    /// The group fan-out per (new teacher, old teacher, student, slice), and the registry's teacher pair, computed
    /// once: both were rebuilt per sample. Cleared when the registry changes; bounded (slices come from the input).
    private var groupCache: [GroupCacheKey: [DistillGroupKey]] = [:]
    /// The last sample's teacher versions: traffic carries a few lists, and a sample whose list equals this one
    /// shares its storage, so the 50,000 samples waiting for labels do not each hold a copy.
    private var sharedTeacherVersions: [String] = []
    private var registryPair: (new: String?, old: String?)?
    /// The online student's group for the current teacher pair.
    private var onlineGroup: DistillGroupKey?
    private static let groupCacheLimit = 4096
    /// One bootstrap weight buffer for every sample (no allocation per sample).
    private var weights: BootstrapWeights
    public internal(set) var counters = EngineCounters()
    /// The merger's bookkeeping of partials and partition progress (scale-out; empty otherwise).
    var mergeBook = MergeBook()
    /// The merger's latest view of each `samples` partition's end offset: an idle partition whose owner has not read
    /// to the end holds the global watermark (not checkpointed; queried again before progress is folded).
    var samplesEnds: [Int32: Int64] = [:]
    /// Scale-out model averaging: a worker's round and samples since, the merger's shares (empty otherwise).
    var studentBook = StudentBook()
    /// The online student's trained and EMA weights, nil without a student (for checks that they stay finite).
    public var studentWeights: (trained: [Float], ema: [Float])? {
        distiller.map { ($0.model.parameterArray, $0.emaParameterArray) }
    }

    /// Builds an engine for a validated config.
    public init(config: DistillConfig, role: Role = .single) throws {
        self.config = config
        self.role = role
        sampleDecoder = RecordDecoder(format: config.topics.formats.samples, classes: config.model.classes.count,
                                      features: config.model.features)
        labelDecoder = RecordDecoder(format: config.topics.formats.labels, classes: config.model.classes.count,
                                     features: config.model.features)
        windows = DistillWindowSet(config: config.statistics)
        weights = BootstrapWeights(replicates: config.statistics.replicates)
        if role == .worker { windows.watermarkPerPartition() } else { windows.followInputWatermark() }
        evaluator = TriggerEvaluator(config: config.triggers, level: config.statistics.confidenceLevel)
        registry = TeacherRegistry(policy: config.teacher.health)
        // The merger's student only carries averaged weights into the checkpoints it publishes; it does not train.
        distiller = config.student.enabled ? try OnlineDistiller(config.student.distiller) : nil
    }

    // MARK: Teachers

    /// Applies a registry record from the `teachers` topic. Registry events may fire `teacher_major_version` at
    /// once and `teacher_regressed`; parked samples whose versions are now known are processed.
    public func handleTeacher(_ bytes: [UInt8], key: [UInt8]?, at position: InputPosition) -> [EngineOutput] {
        let record: TeacherRecord
        do {
            record = try TeacherRecord.decode(json: Data(bytes), key: key.map { String(decoding: $0, as: UTF8.self) })
        } catch {
            return [reject(bytes, key, position, reason: "invalid_teacher_record", field: nil, "\(error)")]
        }
        var out: [EngineOutput] = []
        let events = registry.apply(record)
        registryPair = nil
        groupCache.removeAll()
        for event in events {
            switch event {
            case let .majorVersionChanged(_, new, oldMajor, newMajor):
                let e = TeacherVersionEvent(version: new, major: newMajor, previousMajor: oldMajor,
                                            eventTime: record.createdAtMilliseconds)
                out += publishable(evaluator.teacherVersionAppeared(e))
            case let .regressed(version, reason):
                out += publishable([regressedDecision(version: version, reason: reason,
                                                      at: record.createdAtMilliseconds)])
            case .newActive, .distillationTeacherChanged:
                break
            }
        }
        if !parked.isEmpty {
            let waiting = parked
            parked.removeAll()
            counters.samplesParked = 0
            for p in waiting { out += handleSample(p.sample, key: p.key, at: p.position) }
        }
        return out
    }

    // MARK: Samples and labels

    /// Decodes, validates and folds one sample into the windows and the online student.
    public func handleSample(_ bytes: [UInt8], key: [UInt8]?, at position: InputPosition) -> [EngineOutput] {
        counters.samplesIn += 1
        var sample: DistillSample
        do {
            sample = try sampleDecoder.decode(bytes)
        } catch {
            return [reject(bytes, key, position, reason: error.rule.rawValue, field: error.field, error.message)]
        }
        if !registry.records.isEmpty,
           let unknown = sample.teacherVersions.first(where: { registry.records[$0] == nil }) {
            guard parked.count < maxParked else {
                return [reject(bytes, key, position, reason: "unknown_teacher_version", field: "teachers",
                               "teacher version '\(unknown)' is not in the registry, and \(maxParked) samples "
                               + "already wait for unknown versions")]
            }
            parked.append(ParkedSample(sample: bytes, key: key, position: position))
            counters.samplesParked = parked.count
            return []
        }
        if sample.teacherVersions == sharedTeacherVersions {
            sample.teacherVersions = sharedTeacherVersions
        } else {
            sharedTeacherVersions = sample.teacherVersions
        }
        trackEventTime(sample.timestamp, partition: position.partition)
        let joinKey = self.joinKey(position.partition)
        guard recentIDs[joinKey, default: RecentIDs(capacity: Self.recentIDCapacity)].insert(sample.id) else {
            counters.duplicateSamples += 1
            return []
        }
        var out: [EngineOutput] = []
        let groups = groupKeys(for: sample)
        if sample.label == nil, let label = labelJoins[joinKey]?.takeLabel(for: sample.id) {
            sample.label = label
            counters.labelsJoined += 1
        }
        let partition = position.partition
        weights.reset(idHash: StableHash.id(sample.id))
        if sample.label == nil {
            counters.lateSamples += windows.ingest(sample, groups: groups, weights: weights, partition: partition,
                                                   contribution: .unlabeled) > 0 ? 1 : 0
            labelJoins[joinKey, default: newJoinBuffer()].waitForLabel(sample, partition: partition)
        } else {
            counters.lateSamples += windows.ingest(sample, groups: groups, weights: weights,
                                                   partition: partition) > 0 ? 1 : 0
        }
        counters.samplesIngested += 1
        out += learn(from: sample, partition: partition)
        if let counts = labelJoins[joinKey]?.expire(before: sample.timestamp) { countJoins(joinKey, counts) }
        out += closeWindows()
        return out
    }

    /// Joins a late label to its sample; the labeled statistics of the sample's pane are updated.
    public func handleLabel(_ bytes: [UInt8], key: [UInt8]?, at position: InputPosition) -> [EngineOutput] {
        let record: LabelRecord
        do {
            record = try labelDecoder.decodeLabel(bytes)
        } catch {
            return [reject(bytes, key, position, reason: error.rule.rawValue, field: error.field, error.message)]
        }
        let joinKey = self.joinKey(position.partition)
        if var waiting = labelJoins[joinKey]?.takeSample(for: record.id) {
            waiting.sample.label = record.label
            counters.labelsJoined += 1
            // The labeled half goes to the sample's own partition and pane, not the label's.
            weights.reset(idHash: StableHash.id(waiting.sample.id))
            windows.ingest(waiting.sample, groups: groupKeys(for: waiting.sample), weights: weights,
                           partition: waiting.partition, contribution: .labeled)
        } else {
            countJoins(joinKey, labelJoins[joinKey, default: newJoinBuffer()].waitForSample(record))
        }
        // A label updates an open pane of the sample's partition; nothing can close because of it.
        return []
    }

    /// A worker keeps join and duplicate state per input partition (the labels topic is partitioned like samples,
    /// by id), so it moves with the partition; otherwise one set serves all.
    private func joinKey(_ partition: Int32) -> Int32 { role == .worker ? partition : 0 }

    private func newJoinBuffer() -> LabelJoinBuffer {
        LabelJoinBuffer(windowMillis: config.labels.joinWindowMillis, capacity: config.labels.maxBuffered)
    }

    /// Recounts the join counters over every buffer (after buffers are added, dropped or restored).
    func countJoins() {
        joinCounts = labelJoins.mapValues(\.counts)
        counters.labelsWaiting = joinCounts.values.reduce(0) { $0 + $1.waitingLabels }
        counters.labelsTooLate = joinCounts.values.reduce(0) { $0 + $1.tooLate }
    }

    /// Moves the join counters by the change in one buffer's counts. Summing every buffer per record copied each of
    /// them twice: 64 copies a record on a worker with 32 partitions.
    private func countJoins(_ joinKey: Int32, _ counts: LabelJoinCounts) {
        let old = joinCounts.updateValue(counts, forKey: joinKey) ?? LabelJoinCounts()
        counters.labelsWaiting += counts.waitingLabels - old.waitingLabels
        counters.labelsTooLate += counts.tooLate - old.tooLate
    }

    /// The `samples` partitions this instance reads: the watermark waits until each has delivered data (or is
    /// declared idle), so the first partition read cannot make the others' samples late.
    public func partitionsAssigned(_ partitions: [Int32]) {
        activePartitions.formUnion(partitions)
    }

    /// Partitions this instance no longer reads stop holding the watermark back.
    public func partitionsRevoked(_ partitions: [Int32]) -> [EngineOutput] {
        for p in partitions {
            partitionEventTime[p] = nil
            activePartitions.remove(p)
            // The partition's next owner restores its panes and buffers from the changelog.
            if role == .worker { dropPartition(p) }
        }
        updateWatermark()
        return closeWindows()
    }

    /// A partition with no new data for a while stops holding the watermark back until it delivers again
    /// (its samples older than the watermark are then counted late).
    public func partitionIdle(_ partition: Int32) -> [EngineOutput] {
        guard activePartitions.remove(partition) != nil else { return [] }
        updateWatermark()
        var out = closeWindows()
        // A worker publishes what an idle partition holds without sealing it: the partition stops holding the global
        // watermark back, and the merger keeps these pending. If the input resumes before the panes end globally,
        // the fuller partial sealed later replaces them; sealing here would make those samples late (a pause in
        // traffic longer than the idle timeout lost them).
        if role == .worker { out += windows.openPartials(partition: partition).map(EngineOutput.partial) }
        return out
    }

    private func trackEventTime(_ ts: Int64, partition: Int32) {
        let time = max(eventTimes[partition] ?? ts, ts)
        eventTimes[partition] = time
        if !activePartitions.contains(partition) { activePartitions.insert(partition) }
        if activeTimes != nil && partition >= 0 && Int(partition) < activeTimes!.count {
            activeTimes![Int(partition)] = time
        }
        updateWatermark()
    }

    /// The slowest active partition's event time, once every active partition has delivered something. When every
    /// partition is idle, nothing holds event time back: the newest time seen anywhere applies.
    func updateWatermark() {
        if activeTimes == nil { activeTimes = Self.denseTimes(active: activePartitions, times: eventTimes) }
        if let dense = activeTimes {
            var low = Int64.max
            for t in dense where t < low { low = t }
            if low == Int64.min { return }  // an active partition has not delivered yet
            if low != Int64.max {
                windows.setInputWatermark(low)
                return
            }
        }
        var low: Int64?
        for p in activePartitions {
            guard let t = partitionEventTime[p] else { return }
            low = min(low ?? t, t)
        }
        if activePartitions.isEmpty { low = partitionEventTime.values.max() }
        if let low { windows.setInputWatermark(low) }
    }

    /// `activeTimes` for these partitions, or nil when a partition number is outside the dense range.
    private static func denseTimes(active: Set<Int32>, times: [Int32: Int64]) -> [Int64]? {
        guard let top = active.max(), top < 65_536, active.allSatisfy({ $0 >= 0 }) else { return nil }
        var dense = [Int64](repeating: .max, count: Int(top) + 1)
        for p in active { dense[Int(p)] = times[p] ?? .min }
        return dense
    }

    /// Alert ids found on the alerts topic at start: an alert published after the last checkpoint (then a crash) is
    /// not published again when its records are reprocessed.
    public func rememberPublishedAlerts(_ ids: some Sequence<String>) {
        emittedAlerts.formUnion(ids)
    }

    /// Moves event time forward without a sample (idle partitions), closing what is due.
    public func advance(to eventTime: Int64) -> [EngineOutput] {
        windows.advanceWatermark(to: eventTime)
        return closeWindows()
    }

    // MARK: Windows and triggers

    func closeWindows() -> [EngineOutput] {
        switch role {
        case .worker: return windows.sealPanes().map(EngineOutput.partial)
        case .merger: foldEndedPartials()
        case .single: break
        }
        let closed = windows.closeReady()
        var out: [EngineOutput] = []
        for leaves in closed.statistics {
            let window = leaves.expandingLeaves()
            counters.windowsClosed += 1
            let reports = evaluator.report(window: window)
            out.append(.windowClosed(window, reports: reports))
            for report in reports { out += publishable(report.decisions) }
        }
        for window in closed.calibration {
            let checks = CalibrationCheck.checks(
                window: window, config: config.calibration, level: config.statistics.confidenceLevel,
                deployedTemperature: { [registry] version in registry.records[version]?.temperature })
            out += checks.map(EngineOutput.calibration)
        }
        return out
    }

    /// Keeps fire/resolve decisions whose alert id has not been published yet; records the ids.
    private func publishable(_ decisions: [TriggerDecision]) -> [EngineOutput] {
        // In scale-out only the merging instance decides and publishes.
        guard role != .worker else { return [] }
        var out: [EngineOutput] = []
        // The online student's prequential figures are reported in window snapshots, but the trigger matrix is
        // about the served student: its groups raise no alerts.
        for d in decisions where (d.kind == .fire || d.kind == .resolve) && d.group?.student != Self.onlineStudentVersion {
            guard let id = AlertEvent.id(for: d) else { continue }
            if emittedAlerts.insert(id).inserted {
                counters.alertsEmitted += 1
                out.append(.decision(d))
            } else {
                counters.alertsSuppressed += 1
            }
        }
        return out
    }

    private func regressedDecision(version: String, reason: String, at eventTime: Int64) -> TriggerDecision {
        let rule = config.triggers.rules.first { $0.metric == .teacherRegression }
        return TriggerDecision(
            kind: .fire, rule: rule?.name ?? "teacher_regressed", metric: .teacherRegression,
            action: .skipAndAlertTeacherOwners, subject: version, group: nil, classIndex: nil, window: "registry",
            windowStart: eventTime, windowEnd: eventTime, samples: 0, minSamples: 0, value: nil, lower: nil,
            upper: nil, threshold: rule?.threshold ?? 0, comparison: rule?.comparison ?? .atLeast, mode: .point,
            baseline: nil, episodeID: "\(rule?.name ?? "teacher_regressed")|\(version)|\(eventTime)",
            episodeStart: eventTime, reason: "teacher \(version) regressed: \(reason)")
    }

    // MARK: Groups and the student

    /// The teacher pair comes from the registry (latest active vs previous active); before the registry knows any
    /// teacher, from the sample itself (its last two versions).
    private func groupKeys(for sample: DistillSample) -> [DistillGroupKey] {
        let pair = teacherPair
        let newTeacher = pair.new ?? sample.teacherVersions.last ?? "unknown"
        let oldTeacher = pair.new == nil
            ? (sample.teacherVersions.count >= 2 ? sample.teacherVersions[sample.teacherVersions.count - 2] : nil)
            : pair.old
        let cacheKey = GroupCacheKey(newTeacher: newTeacher, oldTeacher: oldTeacher, student: sample.studentVersion,
                                     slice: sample.slice)
        if let cached = groupCache[cacheKey] { return cached }
        if groupCache.count >= Self.groupCacheLimit { groupCache.removeAll() }
        // One leaf per sample: a closed window fans it out to the pooled, per-student, per-slice and per-student-and-
        // slice groups (`expandingLeaves`), so each pane keeps and updates one group instead of four.
        var groups = [DistillGroupKey.leaf(
            newTeacher: newTeacher, oldTeacher: oldTeacher, pairedTeacher: nil, student: sample.studentVersion,
            slice: sample.slice)]
        if distiller != nil {
            groups.append(DistillGroupKey(newTeacher: newTeacher, oldTeacher: oldTeacher,
                                          student: Self.onlineStudentVersion))
        }
        groupCache[cacheKey] = groups
        return groups
    }

    /// The registry's new and old teacher versions (nil before it knows any), cached until the registry changes.
    private var teacherPair: (new: String?, old: String?) {
        if let registryPair { return registryPair }
        let new = registry.newTeacher?.version
        let pair = (new: new, old: new == nil ? nil : registry.oldTeacher?.version)
        registryPair = pair
        return pair
    }

    /// The student version under which the online EMA student's prequential scores are kept.
    public static let onlineStudentVersion = "distilld-online-ema"

    /// Test, then train: the EMA student's score on the sample goes into the windows before it learns from it.
    private func learn(from sample: DistillSample, partition: Int32) -> [EngineOutput] {
        guard let distiller, !sample.features.isEmpty else { return [] }
        let selection = registry.select(config.teacher.strategy, available: sample.teacherVersions)
        guard !selection.isEmpty else { return [] }
        let teachers = selection.indices.map {
            TeacherLogits(version: sample.teacherVersions[$0], logits: sample.teacherLogits(at: $0))
        }
        // Test, then train: learning scores the EMA model on the sample before it updates (its prequential score),
        // so those logits are the EMA student's for the windows too; a sample it rejects is scored here.
        let outcome = distiller.learn(features: sample.features, teachers: teachers, label: sample.label)
        var scored = sample
        scored.studentVersion = Self.onlineStudentVersion
        switch outcome.disposition {
        case .accepted, .scoredOnly: scored.studentLogits = Array(distiller.lastEMALogits)
        default: scored.studentLogits = distiller.scoreEMA(features: sample.features)
        }
        let pair = teacherPair
        let newTeacher = pair.new ?? sample.teacherVersions.last ?? "unknown"
        if onlineGroup?.newTeacher != newTeacher || onlineGroup?.oldTeacher != pair.old {
            onlineGroup = DistillGroupKey(newTeacher: newTeacher, oldTeacher: pair.old,
                                          student: Self.onlineStudentVersion)
        }
        windows.ingest(scored, groups: [onlineGroup!], weights: weights, partition: partition,
                       contribution: sample.label == nil ? .unlabeled : .all)
        counters.studentUpdates += 1
        studentBook.samplesSinceAdoption += 1
        samplesSinceCheckpoint += 1
        return publishStudentIfDue(at: sample.timestamp)
    }

    /// A checkpoint of the EMA student every `student.checkpoint_every` samples, only when the gate passes (the
    /// lower 95% bound of prequential agreement). Its time is the sample's event time, so replays are identical.
    private func publishStudentIfDue(at eventTime: Int64) -> [EngineOutput] {
        // A worker's student has seen only its own partitions; it does not publish (averaging is not built yet).
        guard let distiller, role != .worker else { return [] }
        let evidence = distiller.emaPrequential.gateEvidence()
        switch config.student.checkpoints.decide(samplesSinceLastCheckpoint: samplesSinceCheckpoint,
                                                 evidence: evidence) {
        case .notDue:
            return []
        case .blocked:
            counters.studentCheckpointsBlocked += 1
            samplesSinceCheckpoint = 0
            return []
        case .write:
            samplesSinceCheckpoint = 0
            counters.studentCheckpoints += 1
            let checkpoint = distiller.makeCheckpoint(
                evidence: evidence, teacherStrategy: config.teacher.strategy.description,
                decision: "interval of \(config.student.checkpoints.intervalSamples) samples; gate passed",
                createdAtMilliseconds: eventTime)
            return [.studentCheckpoint(checkpoint)]
        }
    }

    // MARK: Dead letters

    private func reject(_ bytes: [UInt8], _ key: [UInt8]?, _ position: InputPosition, reason: String, field: String?,
                        _ message: String) -> EngineOutput {
        counters.deadLetters[reason, default: 0] += 1
        return .deadLetter(RejectedRecord(bytes: bytes, key: key, reason: reason, field: field, message: message,
                                          source: position))
    }
}

// MARK: - Reload

extension DistillEngine {
    /// Applies a reloaded config (SIGHUP) without losing state: trigger rules, thresholds, baselines, calibration
    /// settings and teacher health take effect at the next window close; open episodes carry over.
    /// Changes that would invalidate the state are refused, naming what changed, and the old config stays in force.
    public func reload(_ new: DistillConfig) throws(ConfigError) {
        var refused: [String] = []
        var reshaped: DistillWindowSet?
        if new.statistics != config.statistics {
            do {
                reshaped = try windows.reshaped(to: new.statistics)
            } catch {
                throw ConfigError(file: "reload", line: nil, key: error.setting,
                                  message: error.message + "; the old config stays in force. Restart distilld with "
                                      + "a fresh state (state.on_corrupt: reset) to apply it")
            }
        }
        if new.model != config.model { refused.append("model") }
        // A topic's format is part of what its offsets mean: records already read were decoded in the old one.
        if new.topics.formats != config.topics.formats { refused.append("topics.formats") }
        var newNames = new.topics
        newNames.formats = config.topics.formats
        if newNames != config.topics || new.consumerGroup != config.consumerGroup { refused.append("topics") }
        if new.broker != config.broker { refused.append("brokers/kafka") }
        if new.student.distiller != config.student.distiller || new.student.enabled != config.student.enabled {
            refused.append("student")
        }
        if new.state != config.state || new.labels != config.labels { refused.append("state/labels") }
        if new.scaleOut != config.scaleOut { refused.append("scale_out") }
        guard refused.isEmpty else {
            throw ConfigError(
                file: "reload", line: nil, key: refused.joined(separator: ", "),
                message: "cannot change at runtime without losing state; the old config stays in force. Restart "
                    + "distilld to apply it")
        }
        if let reshaped { windows = reshaped }
        var evaluator = TriggerEvaluator(config: new.triggers, level: new.statistics.confidenceLevel)
        evaluator.adoptEpisodes(from: self.evaluator)
        self.evaluator = evaluator
        registry.policy = new.teacher.health
        registryPair = nil
        config = new
    }
}

// MARK: - State

extension DistillEngine {
    /// Everything the engine knows that is not re-read from Kafka on start (the registry is: the `teachers` topic
    /// is read from its beginning). Encoded into the state checkpoint.
    struct EngineState: Codable, Sendable {
        /// 2: event-time panes kept per input partition until sealed; waiting samples remember their partition.
        /// 3: the same fields in the `StateBinary` form instead of JSON (format 2 checkpoints are still read).
        static let currentFormat = 3
        var formatVersion = currentFormat
        var configRevision: String
        var windows: DistillWindowSet
        var evaluator: TriggerEvaluator
        var labelJoin: LabelJoinBuffer
        var emittedAlerts: [String]
        var recentIDs: RecentIDs
        var parked: [ParkedSample]
        var counters: EngineCounters
        var partitionEventTime: [Int32: Int64]
        var samplesSinceCheckpoint: Int
        /// The trainer's own binary state (base64 in the JSON, not an array of numbers).
        var student: Data?

        /// Written in `EngineStateHandoff`'s order, which lets go of the large parts as it goes.
        enum CodingKeys: String, CodingKey {
            case formatVersion, configRevision, windows, evaluator, labelJoin, emittedAlerts, recentIDs, parked
            case counters, partitionEventTime, samplesSinceCheckpoint, student
        }
    }

    /// The engine's state as bytes (JSON), for the state checkpoint.
    public func snapshot() throws -> [UInt8] {
        try Self.encode(state())
    }

    /// The engine's state at this instant, as a value. Cheap: the windows and buffers are copy-on-write, so the
    /// daemon takes it between batches and encodes it on another thread while the loop goes on.
    func state() -> EngineState {
        EngineState(
            configRevision: config.revision, windows: windows, evaluator: evaluator,
            labelJoin: labelJoins[0] ?? newJoinBuffer(), emittedAlerts: emittedAlerts.sorted(),
            recentIDs: recentIDs[0] ?? RecentIDs(capacity: Self.recentIDCapacity), parked: parked, counters: counters,
            partitionEventTime: partitionEventTime, samplesSinceCheckpoint: samplesSinceCheckpoint,
            student: distiller.map { Data($0.trainerState()) })
    }

    /// A state taken by ``state()`` as the checkpoint's bytes.
    static func encode(_ state: EngineState) throws -> [UInt8] {
        try StateBinaryEncoder().encode(state)
    }

    /// Restores a snapshot. Window and trigger configuration come from the current config (thresholds may have
    /// changed); the windows themselves must have the same shape, or restoring is refused.
    public func restore(_ bytes: [UInt8]) throws {
        struct Header: Decodable { var formatVersion: Int }
        // Format 3 is binary; format 2 was the same fields as JSON, so an upgrade keeps its state.
        let binary = StateBinary.recognizes(bytes)
        let header = binary ? try StateBinaryDecoder().decode(Header.self, from: bytes)
            : try JSONDecoder().decode(Header.self, from: Data(bytes))
        guard header.formatVersion == (binary ? EngineState.currentFormat : 2) else {
            throw EngineStateError.incompatible(
                "engine state format \(header.formatVersion), this build reads 2 and \(EngineState.currentFormat); "
                    + "start from a fresh state (state.on_corrupt: reset)")
        }
        let state = binary ? try StateBinaryDecoder().decode(EngineState.self, from: bytes)
            : try JSONDecoder().decode(EngineState.self, from: Data(bytes))
        guard state.windows.config == config.statistics else {
            throw EngineStateError.incompatible(
                "the checkpoint's windows or statistics settings differ from the config; restore the old windows "
                    + "or start from a fresh state (state.on_corrupt: reset)")
        }
        windows = state.windows
        var evaluator = TriggerEvaluator(config: config.triggers, level: config.statistics.confidenceLevel)
        evaluator.adoptEpisodes(from: state.evaluator)
        self.evaluator = evaluator
        labelJoins = [0: state.labelJoin]
        joinCounts = labelJoins.mapValues(\.counts)
        emittedAlerts = Set(state.emittedAlerts)
        recentIDs = [0: state.recentIDs]
        parked = state.parked
        counters = state.counters
        partitionEventTime = state.partitionEventTime
        samplesSinceCheckpoint = state.samplesSinceCheckpoint
        activePartitions = Set(state.partitionEventTime.keys)
        if let student = state.student, let distiller { try distiller.restoreTrainerState(Array(student)) }
    }
}

/// Why a snapshot cannot be restored.
public enum EngineStateError: Error, CustomStringConvertible {
    case incompatible(String)
    public var description: String {
        switch self { case .incompatible(let why): "incompatible engine state: \(why)" }
    }
}

/// What a sample's group fan-out depends on.
struct GroupCacheKey: Hashable {
    var newTeacher: String
    var oldTeacher: String?
    var student: String?
    var slice: String?
}

/// A sample waiting for the registry to learn its teacher version.
struct ParkedSample: Codable, Sendable {
    var sample: [UInt8]
    var key: [UInt8]?
    var position: InputPosition

    init(sample: [UInt8], key: [UInt8]?, position: InputPosition) {
        self.sample = sample
        self.key = key
        self.position = position
    }

    enum CodingKeys: String, CodingKey { case sample, key, position }

    // Raw bytes as base64 (`Data`), not as JSON arrays of numbers.
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sample = Array(try c.decode(Data.self, forKey: .sample))
        key = try c.decodeIfPresent(Data.self, forKey: .key).map(Array.init)
        position = try c.decode(InputPosition.self, forKey: .position)
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Data(sample), forKey: .sample)
        try c.encodeIfPresent(key.map { Data($0) }, forKey: .key)
        try c.encode(position, forKey: .position)
    }
}

// MARK: - Bounded helpers

/// Remembers the last `capacity` ids, to drop duplicate samples without unbounded memory.
struct RecentIDs: Codable, Sendable {
    let capacity: Int
    // Sharded and chunked: the first insert after a checkpoint's snapshot copied 200,000 ids twice over.
    private var set: IDSet
    private var order = ChunkedArray<String>()
    private var head = 0

    init(capacity: Int) {
        self.capacity = capacity
        set = IDSet(expectedCount: capacity)
    }

    /// Ids remembered.
    var count: Int { order.count }

    // The set is rebuilt from `order` on decode: encoding it too doubled the bytes and made checkpoints depend
    // on the set's hash order.
    enum CodingKeys: String, CodingKey { case capacity, order, head }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        capacity = try c.decode(Int.self, forKey: .capacity)
        let ids = try c.decode([String].self, forKey: .order)
        order = ChunkedArray(ids)
        head = try c.decode(Int.self, forKey: .head)
        set = IDSet(ids, expectedCount: capacity)
        guard capacity > 0, order.count <= capacity, head >= 0, head < max(order.count, 1), set.count == order.count
        else {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "inconsistent ids"))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(capacity, forKey: .capacity)
        try c.encode(order, forKey: .order)
        try c.encode(head, forKey: .head)
    }

    /// True when the id is new.
    mutating func insert(_ id: String) -> Bool {
        guard set.insert(id) else { return false }
        if order.count < capacity {
            order.append(id)
        } else {
            set.remove(order[head])
            order[head] = id
            head = (head + 1) % capacity
        }
        return true
    }
}
