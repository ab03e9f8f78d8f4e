import DistillCore
import Foundation

// MARK: - A partition's state, moving between instances

/// Everything a worker holds for one input partition: its open panes and event-time clocks, its half of the label
/// join, its duplicate filter and its parked samples. Published to the partials topic at each checkpoint, it is what
/// the partition's next owner restores.
struct PartitionState: Codable, Sendable {
    var partition: Int32
    var eventTime: Int64?
    var clocks: [String: PartitionClock]
    var open: [WindowSetPartial]
    var labelJoin: LabelJoinBuffer?
    var recentIDs: RecentIDs?
    var parked: [ParkedSample]
}

/// How far a source partition's partials are complete, as its owner reported at its last checkpoint.
struct PartitionProgress: Codable, Sendable, Equatable {
    var partition: Int32
    /// The partition's newest event time, ms: every pane of window w ending at or before this minus w's grace has been
    /// sealed and published (per-partition watermarks).
    var eventTime: Int64?
    /// False once the partition is idle: everything it held is sealed, and it does not hold the global watermark back.
    var holds: Bool
    /// The next `samples` and `labels` offsets the published state covers.
    var samplesNext: Int64?
    var labelsNext: Int64?
    /// The token of the partition state published with this progress.
    var stateToken: String
}

/// The merger's bookkeeping.
struct MergeBook: Codable, Sendable {
    /// Sealed partials not folded yet (their pane has not ended globally), the latest per slot.
    var pending: [PartialSlot: WindowSetPartial] = [:]
    /// Slots folded into the global panes, with their sample count: a partial sent again for one (a partition
    /// reprocessed by its next owner) is compared, never folded twice.
    var folded: [PartialSlot: Int] = [:]
    /// Each source partition's last progress.
    var progress: [Int32: PartitionProgress] = [:]
    /// How many partitions the `samples` topic has: the global watermark waits for each.
    var sourcePartitions: Int32 = 0
    /// Partials that arrived after their pane had been folded with other content, or for a closed window.
    var conflicting = 0
}

/// What the merging instance checkpoints to the merge topic.
struct MergeState: Codable, Sendable {
    /// 2: the student book keeps the newest average's weights (shares carry progress since their base).
    static let currentFormat = 2
    var formatVersion = currentFormat
    var configRevision: String
    var windows: DistillWindowSet
    var evaluator: TriggerEvaluator
    var emittedAlerts: [String]
    var book: MergeBook
    var counters: EngineCounters
    /// Model averaging: the round, samples averaged, shares not averaged yet.
    var student: StudentBook
}

// MARK: - Worker

extension DistillEngine {
    /// A worker's state for one input partition.
    func partitionState(_ partition: Int32, samplesTopic: String) -> PartitionState {
        PartitionState(
            partition: partition, eventTime: partitionEventTime[partition],
            clocks: windows.partitionClocks(partition), open: windows.openPartials(partition: partition),
            labelJoin: labelJoins[partition], recentIDs: recentIDs[partition],
            parked: parked.filter { $0.position.partition == partition && $0.position.topic == samplesTopic })
    }

    /// Takes over a partition from the state its previous owner published.
    func restorePartition(_ state: PartitionState) {
        let p = state.partition
        dropPartition(p)
        for partial in state.open { windows.restoreOpen(partial) }
        windows.restoreClocks(state.clocks, partition: p)
        partitionEventTime[p] = state.eventTime
        labelJoins[p] = state.labelJoin
        recentIDs[p] = state.recentIDs
        parked += state.parked
        counters.samplesParked = parked.count
        countJoins()
        activePartitions.insert(p)
    }

    /// Forgets what this worker held for a partition (its next owner restores it).
    func dropPartition(_ partition: Int32) {
        windows.dropOpen(partition: partition)
        labelJoins[partition] = nil
        recentIDs[partition] = nil
        parked.removeAll { $0.position.partition == partition }
        counters.samplesParked = parked.count
        countJoins()
    }

    /// The progress record of a partition this worker owns.
    func progress(of partition: Int32, samplesNext: Int64?, labelsNext: Int64?, stateToken: String)
        -> PartitionProgress {
        PartitionProgress(partition: partition, eventTime: partitionEventTime[partition],
                          holds: activePartitions.contains(partition), samplesNext: samplesNext,
                          labelsNext: labelsNext, stateToken: stateToken)
    }
}

// MARK: - Merger

extension DistillEngine {
    /// The number of `samples` partitions: the global watermark waits until each has reported progress.
    func setSourcePartitions(_ count: Int32) {
        mergeBook.sourcePartitions = count
    }

    /// A sealed partial from any worker. Kept until its pane ends globally; a newer one for the same slot replaces it.
    func handlePartial(_ partial: WindowSetPartial) -> [EngineOutput] {
        let slot = partial.slot
        if let samples = mergeBook.folded[slot] {
            // Sent again by the partition's next owner after reprocessing: equal unless lateness differed.
            if samples != partial.samples { mergeBook.conflicting += 1 }
            return []
        }
        guard let ended = windows.paneEnded(slot, inputWatermark: windows.inputWatermark ?? Int64(Int32.min)) else {
            mergeBook.conflicting += 1  // a window this config does not have
            return []
        }
        if ended {
            // Its windows have closed without it: it is late at the merge.
            mergeBook.conflicting += 1
            counters.lateSamples += partial.samples
            return []
        }
        mergeBook.pending[slot] = partial
        return []
    }

    /// A partition's progress: the global watermark moves to the slowest partition that holds it, and the panes and
    /// windows that ended are folded and closed.
    func handleProgress(_ progress: PartitionProgress) -> [EngineOutput] {
        mergeBook.progress[progress.partition] = progress
        guard let global = globalInputWatermark() else { return [] }
        windows.setInputWatermark(global)
        return closeWindows()
    }

    /// The partitions whose owner last reported them idle.
    var idlePartitions: [Int32] {
        mergeBook.progress.values.filter { !$0.holds }.map(\.partition).sorted()
    }

    /// The `samples` partitions' end offsets, queried just before progress is folded.
    func observeSamplesEnds(_ ends: [Int32: Int64]) {
        samplesEnds.merge(ends) { $1 }
    }

    /// Whether a partition must hold the global watermark: its owner says so, or it was reported idle but input has
    /// arrived beyond what its owner has read. Input resumed after a pause reaches the partitions' owners at
    /// different moments; without this, the first one to report would release the others' panes, and their
    /// partials would be late at the merge (the single instance's `resumeIdle` rule, across instances).
    func holdsWatermark(_ progress: PartitionProgress) -> Bool {
        progress.holds || (samplesEnds[progress.partition] ?? 0) > (progress.samplesNext ?? 0)
    }

    /// The slowest event time over the partitions that hold the watermark, once every partition has reported; when
    /// none holds (all idle), the newest.
    func globalInputWatermark() -> Int64? {
        let n = mergeBook.sourcePartitions
        guard n > 0 else { return nil }
        var low: Int64?, high: Int64?, anyHolds = false
        for p in 0..<n {
            guard let progress = mergeBook.progress[p] else { return nil }
            if holdsWatermark(progress) {
                guard let t = progress.eventTime else { return nil }
                anyHolds = true
                low = min(low ?? t, t)
            }
            if let t = progress.eventTime { high = max(high ?? t, t) }
        }
        return anyHolds ? low : high
    }

    /// Folds the pending partials whose pane has ended globally, pane then partition order (as a single instance
    /// seals them), and forgets folded slots no open window covers.
    func foldEndedPartials() {
        guard let global = windows.inputWatermark else { return }
        let ready = mergeBook.pending.keys.filter { windows.paneEnded($0, inputWatermark: global) == true }.sorted()
        for slot in ready {
            let partial = mergeBook.pending.removeValue(forKey: slot)!
            windows.mergeSealed(partial)
            mergeBook.folded[slot] = partial.samples
        }
        if mergeBook.folded.count > 4 * max(1, ready.count) {
            mergeBook.folded = mergeBook.folded.filter { !windows.paneForgotten($0.key) }
        }
    }

    /// Partials that arrived too late to be folded, or disagreed with what had been folded.
    var conflictingPartials: Int { mergeBook.conflicting }

    /// The merger's state, for the merge topic.
    func mergeState() -> MergeState {
        MergeState(configRevision: config.revision, windows: windows, evaluator: evaluator,
                   emittedAlerts: emittedAlerts.sorted(), book: mergeBook, counters: counters, student: studentBook)
    }

    /// Takes over merging from the last merge state published.
    func restoreMerge(_ state: MergeState) throws {
        guard state.formatVersion == MergeState.currentFormat else {
            throw EngineStateError.incompatible("merge state format \(state.formatVersion), this build reads "
                                                + "\(MergeState.currentFormat)")
        }
        guard state.windows.config == config.statistics else {
            throw EngineStateError.incompatible("the merge state's windows or statistics settings differ from the "
                                                + "config")
        }
        windows = state.windows
        var evaluator = TriggerEvaluator(config: config.triggers, level: config.statistics.confidenceLevel)
        evaluator.adoptEpisodes(from: state.evaluator)
        self.evaluator = evaluator
        emittedAlerts.formUnion(state.emittedAlerts)
        let partitions = mergeBook.sourcePartitions
        mergeBook = state.book
        if partitions > 0 { mergeBook.sourcePartitions = partitions }
        counters = state.counters
        studentBook = state.student
    }
}
