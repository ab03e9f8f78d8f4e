// MARK: - Partials of a whole window set, for scale-out

/// One source partition's aggregates for one pane of one named event-time window of a `DistillWindowSet`: the unit
/// a scale-out instance publishes for the partitions it owns and the merging instance folds in.
public struct WindowSetPartial: Sendable, Codable {
    /// Set for a teacher/student statistics window.
    public var statistics: PanePartial<DistillGroupKey, DistillPaneStats>?
    /// Set for a calibration window.
    public var calibration: PanePartial<CalibrationKey, CalibrationStats>?

    public init(_ partial: PanePartial<DistillGroupKey, DistillPaneStats>) { statistics = partial }
    public init(_ partial: PanePartial<CalibrationKey, CalibrationStats>) { calibration = partial }

    /// Window name.
    public var window: String { statistics?.window ?? calibration?.window ?? "" }
    /// Source (input) partition.
    public var partition: Int32 { statistics?.partition ?? calibration?.partition ?? -1 }
    /// Pane index.
    public var pane: Int64 { statistics?.pane ?? calibration?.pane ?? 0 }
    /// Samples accepted into the pane from this partition.
    public var samples: Int { statistics?.samples ?? calibration?.samples ?? 0 }
    /// Which (window, partition, pane) this is: a newer partial with the same slot replaces an older one.
    public var slot: PartialSlot { PartialSlot(window: window, partition: partition, pane: pane) }
}

/// The identity of a partial: window, source partition, pane.
public struct PartialSlot: Hashable, Sendable, Codable, Comparable {
    public var window: String
    public var partition: Int32
    public var pane: Int64

    public init(window: String, partition: Int32, pane: Int64) {
        self.window = window
        self.partition = partition
        self.pane = pane
    }

    /// Pane, then partition, then window: the order partials are folded in, so sums are identical on every run.
    public static func < (a: PartialSlot, b: PartialSlot) -> Bool {
        (a.pane, a.partition, a.window) < (b.pane, b.partition, b.window)
    }
}

extension DistillWindowSet {
    /// Seals every event-time window's ended panes (see `EventTimeWindows.sealPanes()`) without merging them: a
    /// scale-out instance publishes them instead.
    public mutating func sealPanes() -> [WindowSetPartial] {
        var out: [WindowSetPartial] = []
        for i in timeWindows.indices { out += timeWindows[i].sealPanes().map(WindowSetPartial.init) }
        for i in calibrationTime.indices { out += calibrationTime[i].sealPanes().map(WindowSetPartial.init) }
        return out
    }

    /// Makes every event-time window judge lateness and seal panes per input partition (a scale-out worker).
    public mutating func watermarkPerPartition() {
        for i in timeWindows.indices { timeWindows[i].watermarkPerPartition() }
        for i in calibrationTime.indices { calibrationTime[i].watermarkPerPartition() }
    }

    /// Per-partition mode: each event-time window's clock for a partition, by window name.
    public func partitionClocks(_ partition: Int32) -> [String: PartitionClock] {
        var out: [String: PartitionClock] = [:]
        for w in timeWindows { out[w.name] = w.partitionClock(partition) }
        for w in calibrationTime { out[w.name] = w.partitionClock(partition) }
        return out
    }

    /// Per-partition mode: restores a partition's clocks taken by `partitionClocks(_:)`.
    public mutating func restoreClocks(_ clocks: [String: PartitionClock], partition: Int32) {
        for i in timeWindows.indices {
            if let c = clocks[timeWindows[i].name] { timeWindows[i].restoreClock(c, partition: partition) }
        }
        for i in calibrationTime.indices {
            if let c = clocks[calibrationTime[i].name] { calibrationTime[i].restoreClock(c, partition: partition) }
        }
    }

    /// The input watermark the event-time windows follow (the same for all of them), ms.
    public var inputWatermark: Int64? { timeWindows.first?.inputWatermark ?? calibrationTime.first?.inputWatermark }

    /// Folds a sealed partial from any instance into its window's global pane. Returns false for an unknown window.
    @discardableResult
    public mutating func mergeSealed(_ partial: WindowSetPartial) -> Bool {
        if let p = partial.statistics, let i = timeWindows.firstIndex(where: { $0.name == p.window }) {
            timeWindows[i].mergeSealed(p)
            return true
        }
        if let p = partial.calibration, let i = calibrationTime.firstIndex(where: { $0.name == p.window }) {
            calibrationTime[i].mergeSealed(p)
            return true
        }
        return false
    }

    /// A source partition's open partials over every event-time window.
    public func openPartials(partition: Int32) -> [WindowSetPartial] {
        timeWindows.flatMap { $0.openPartials(partition: partition).map(WindowSetPartial.init) }
            + calibrationTime.flatMap { $0.openPartials(partition: partition).map(WindowSetPartial.init) }
    }

    /// Puts back open partials published by the partition's previous owner. Returns false for an unknown window.
    @discardableResult
    public mutating func restoreOpen(_ partial: WindowSetPartial) -> Bool {
        if let p = partial.statistics, let i = timeWindows.firstIndex(where: { $0.name == p.window }) {
            timeWindows[i].restoreOpen(p)
            return true
        }
        if let p = partial.calibration, let i = calibrationTime.firstIndex(where: { $0.name == p.window }) {
            calibrationTime[i].restoreOpen(p)
            return true
        }
        return false
    }

    /// Forgets a source partition's open partials.
    public mutating func dropOpen(partition: Int32) {
        for i in timeWindows.indices { timeWindows[i].dropOpen(partition: partition) }
        for i in calibrationTime.indices { calibrationTime[i].dropOpen(partition: partition) }
    }

    /// Whether `slot`'s pane has ended for input watermark `inputWatermark` (nil for an unknown window).
    public func paneEnded(_ slot: PartialSlot, inputWatermark: Int64) -> Bool? {
        if let w = timeWindows.first(where: { $0.name == slot.window }) {
            return w.paneEnded(slot.pane, inputWatermark: inputWatermark)
        }
        return calibrationTime.first { $0.name == slot.window }?.paneEnded(slot.pane, inputWatermark: inputWatermark)
    }

    /// Whether no open window covers `slot`'s pane any more.
    public func paneForgotten(_ slot: PartialSlot) -> Bool {
        if let w = timeWindows.first(where: { $0.name == slot.window }) { return w.paneForgotten(slot.pane) }
        return calibrationTime.first { $0.name == slot.window }?.paneForgotten(slot.pane) ?? true
    }

    /// True when the set has count windows, which follow arrival order and cannot be split across instances.
    public var hasCountWindows: Bool { !countWindows.isEmpty || !calibrationCount.isEmpty }
}
