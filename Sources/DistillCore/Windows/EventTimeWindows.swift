// MARK: - Event-time sliding windows over panes

/// Event-time sliding windows built from panes of mergeable aggregates.
///
/// Panes have length `gcd(size, slide)`; pane i covers [i·pane, (i+1)·pane). Window instances end at
/// multiples of `slide` and cover [end − size, end). The watermark is max(event time seen) − grace (or
/// a larger value given to `advanceWatermark(to:)`); a window closes when watermark ≥ end. A sample with
/// event time < watermark is late: it is counted and never folded in, so closed windows never change and
/// every pane a sample lands in still belongs only to unclosed windows. Panes no future window needs are
/// dropped, so memory is O(size/pane × groups). Windows whose panes hold no samples are not emitted.
///
/// State is kept per source partition while a pane is open: each input partition folds into its own `PanePartial`.
/// Once the watermark passes a pane's end no sample can reach it, so the pane is sealed: its partials are merged, in
/// partition order, into the global pane the windows read. The merge is exact (sums), figures do not depend on how
/// partitions interleave, and a partial is the unit another instance can own (see `sealPanes()`/`mergeSealed(_:)`).
/// Only open panes are per partition, so memory grows with partitions × (grace + skew) / pane, not with the size.
public struct EventTimeWindows<Key: Hashable & Sendable & Codable, Aggregate: WindowAggregate>: Sendable, Codable {
    /// Window name.
    public let name: String
    /// Window length, ms.
    public let size: Int64
    /// Slide, ms.
    public let slide: Int64
    /// Grace period, ms.
    public let grace: Int64
    /// Pane length, ms (gcd of size and slide).
    public let paneSize: Int64

    /// Sealed pane index → per-group aggregates merged over every partition.
    public private(set) var panes: [Int64: [Key: Aggregate]] = [:]
    /// Sealed pane index → samples accepted.
    public private(set) var paneSamples: [Int64: Int] = [:]
    /// Source partition → open pane index → that partition's aggregates.
    public private(set) var openPanes: [Int32: [Int64: PanePartial<Key, Aggregate>]] = [:]
    /// Smallest open pane index, so sealing costs nothing until the watermark reaches it.
    public private(set) var oldestOpenPane: Int64?
    /// Largest event time accepted or offered, ms.
    public private(set) var maxEventTime: Int64?
    /// Externally advanced watermark, ms.
    public private(set) var externalWatermark: Int64?
    /// When true, the watermark follows `inputWatermark` (the slowest input partition's event time) instead of the
    /// largest event time seen: with many partitions read batch by batch, one partition's newest sample must not
    /// make the others' samples late.
    public private(set) var followsInputs = false
    /// The event time every input partition has reached, ms (set by the daemon).
    public private(set) var inputWatermark: Int64?
    /// When true (a scale-out worker), lateness and sealing follow each input partition's own event time: a sample is
    /// late when it is older than its partition's newest event time minus the grace, and a partition's pane is sealed
    /// when its own watermark passes the pane's end. Figures then do not depend on which instance owns which
    /// partition, nor on how partitions interleave.
    public var perPartition: Bool { clocks != nil }
    /// Per-partition mode: each input partition's clock (nil in the default mode; optional so that checkpoints written
    /// before the mode existed still decode).
    public private(set) var clocks: [Int32: PartitionClock]?
    /// End of the next window instance to close, ms.
    public private(set) var nextEnd: Int64?
    /// Window instances ending before this are closed without being emitted: after a reload that grew the window,
    /// they would reach back to panes the old shape had already dropped.
    public private(set) var emitFrom: Int64?
    /// True once any window instance has been closed (or skipped as empty).
    public private(set) var closedAny = false
    /// Total late samples.
    public private(set) var lateTotal = 0
    /// Late samples since the last emitted window.
    public private(set) var lateSinceEmit = 0

    /// Creates windows of `size` ms sliding every `slide` ms with `grace` ms of grace.
    public init(name: String, size: Int64, slide: Int64, grace: Int64) {
        precondition(slide > 0 && size >= slide && grace >= 0, "EventTimeWindows: invalid size/slide/grace")
        self.name = name
        self.size = size
        self.slide = slide
        self.grace = grace
        self.paneSize = gcd(size, slide)
    }

    /// Creates windows from an event-time spec.
    public init(spec: WindowSpec) {
        guard case let .eventTime(size, slide, grace) = spec.kind else {
            preconditionFailure("EventTimeWindows: spec \(spec.name) is not an event-time window")
        }
        self.init(name: spec.name, size: size, slide: slide, grace: grace)
    }

    /// The current watermark, ms, or nil before the first sample.
    public var watermark: Int64? {
        let fromEvents = followsInputs ? inputWatermark.map { $0 - grace } : maxEventTime.map { $0 - grace }
        switch (fromEvents, externalWatermark) {
        case let (a?, b?): return max(a, b)
        case let (a?, nil): return a
        case let (nil, b?): return b
        default: return nil
        }
    }

    /// Per-partition partial panes not yet sealed.
    public var openPaneCount: Int { openPanes.values.reduce(0) { $0 + $1.count } }
    /// Panes held, sealed and open (each partition's open pane counts once).
    public var paneCount: Int { panes.count + openPaneCount }

    /// Offers a sample with event time `eventTime` read from input `partition`; if it is not late, `update` folds it
    /// into that partition's aggregates for the sample's pane (create missing groups with `dict[key, default: empty]`).
    @discardableResult
    public mutating func ingest(eventTime: Int64, partition: Int32 = 0,
                                _ update: (inout [Key: Aggregate]) -> Void) -> IngestOutcome {
        if perPartition {
            if let w = partitionWatermark(partition), eventTime < w {
                lateTotal += 1
                lateSinceEmit += 1
                return .late
            }
            clocks![partition, default: PartitionClock(time: nil, floor: nil)].advance(to: eventTime)
        } else if let w = watermark, eventTime < w {
            lateTotal += 1
            lateSinceEmit += 1
            return .late
        }
        maxEventTime = max(maxEventTime ?? eventTime, eventTime)
        let firstEnd = (floorDiv(eventTime, slide) + 1) * slide
        // Safe to lower: every closed end is ≤ watermark ≤ eventTime < firstEnd.
        nextEnd = min(nextEnd ?? firstEnd, firstEnd)
        let pane = floorDiv(eventTime, paneSize)
        let windowName = name
        openPanes[partition, default: [:]][pane, default: PanePartial(window: windowName, partition: partition,
                                                                        pane: pane)].add(update)
        oldestOpenPane = min(oldestOpenPane ?? pane, pane)
        return .accepted
    }

    /// Calls `body` once per open pane with the groups of that pane's open partials, one entry per partition (in
    /// ascending partition order), which it may change in place. For passes that need a pane's partitions side by
    /// side; what `body` leaves is put back.
    mutating func withOpenPartials(_ body: (_ pane: Int64, _ groups: inout [[Key: Aggregate]]) -> Void) {
        var partitionsByPane: [Int64: [Int32]] = [:]
        for partition in openPanes.keys.sorted() {
            for pane in openPanes[partition]!.keys { partitionsByPane[pane, default: []].append(partition) }
        }
        for (pane, partitions) in partitionsByPane {
            // Moved out, not copied: each dictionary stays uniquely referenced while `body` changes it.
            var groups = partitions.map { p -> [Key: Aggregate] in
                defer { openPanes[p]![pane]!.groups = [:] }
                return openPanes[p]![pane]!.groups
            }
            body(pane, &groups)
            for (i, p) in partitions.enumerated() { openPanes[p]![pane]!.groups = groups[i] }
        }
    }

    /// Removes and returns every open partial whose pane has ended (end ≤ watermark), ordered by pane then partition.
    /// Their panes can no longer change: later samples for them are late.
    public mutating func sealPanes() -> [PanePartial<Key, Aggregate>] {
        if perPartition { return sealPerPartition() }
        guard let w = watermark, let oldest = oldestOpenPane, (oldest + 1) * paneSize <= w else { return [] }
        let sealBelow = floorDiv(w, paneSize)  // panes < this have end ≤ w
        var sealed: [PanePartial<Key, Aggregate>] = []
        var newOldest: Int64?
        for partition in openPanes.keys {
            for pane in openPanes[partition]!.keys {
                if pane < sealBelow {
                    sealed.append(openPanes[partition]!.removeValue(forKey: pane)!)
                } else {
                    newOldest = min(newOldest ?? pane, pane)
                }
            }
            if openPanes[partition]!.isEmpty { openPanes[partition] = nil }
        }
        oldestOpenPane = newOldest
        return sealed.sorted { ($0.pane, $0.partition) < ($1.pane, $1.partition) }
    }

    /// Per-partition mode: a partition's watermark (its newest event time minus the grace, or its floor), ms.
    public func partitionWatermark(_ partition: Int32) -> Int64? {
        guard let clock = clocks?[partition] else { return nil }
        switch (clock.time.map { $0 - grace }, clock.floor) {
        case let (a?, b?): return max(a, b)
        case let (a, b): return a ?? b
        }
    }

    /// Per-partition mode: lateness and sealing follow each partition's own event time (see `perPartition`).
    public mutating func watermarkPerPartition() {
        if clocks == nil { clocks = [:] }
    }

    private mutating func sealPerPartition() -> [PanePartial<Key, Aggregate>] {
        var sealed: [PanePartial<Key, Aggregate>] = []
        for partition in openPanes.keys {
            guard let w = partitionWatermark(partition) else { continue }
            let sealBelow = floorDiv(w, paneSize)
            for pane in openPanes[partition]!.keys where pane < sealBelow {
                sealed.append(openPanes[partition]!.removeValue(forKey: pane)!)
            }
            if openPanes[partition]!.isEmpty { openPanes[partition] = nil }
        }
        guard !sealed.isEmpty else { return [] }
        oldestOpenPane = openPanes.values.lazy.flatMap(\.keys).min()
        return sealed.sorted { ($0.pane, $0.partition) < ($1.pane, $1.partition) }
    }

    /// Folds a sealed partial into the global pane it belongs to. Merge partials in `sealPanes()` order so
    /// floating-point sums are the same on every run.
    public mutating func mergeSealed(_ partial: PanePartial<Key, Aggregate>) {
        Self.mergeInto(&panes[partial.pane, default: [:]], partial.groups)
        paneSamples[partial.pane, default: 0] += partial.samples
        // The first window holding this pane may not be known yet when the partial came from elsewhere.
        let firstEnd = (floorDiv(partial.pane * paneSize, slide) + 1) * slide
        nextEnd = min(nextEnd ?? firstEnd, firstEnd)
    }

    /// Every open partial of one source partition, oldest pane first: what a new owner of the partition needs to go on
    /// from here (the scale-out changelog).
    public func openPartials(partition: Int32) -> [PanePartial<Key, Aggregate>] {
        (openPanes[partition] ?? [:]).values.sorted { $0.pane < $1.pane }
    }

    /// Puts back an open partial taken by `openPartials(partition:)` on another instance.
    public mutating func restoreOpen(_ partial: PanePartial<Key, Aggregate>) {
        openPanes[partial.partition, default: [:]][partial.pane] = partial
        oldestOpenPane = min(oldestOpenPane ?? partial.pane, partial.pane)
        let firstEnd = (floorDiv(partial.pane * paneSize, slide) + 1) * slide
        nextEnd = min(nextEnd ?? firstEnd, firstEnd)
    }

    /// Forgets a source partition's open partials: another instance owns the partition now.
    public mutating func dropOpen(partition: Int32) {
        clocks?[partition] = nil
        guard openPanes.removeValue(forKey: partition) != nil else { return }
        oldestOpenPane = openPanes.values.lazy.flatMap(\.keys).min()
    }

    /// Per-partition mode: a partition's clock (newest event time, floor), to move it with the partition.
    public func partitionClock(_ partition: Int32) -> PartitionClock {
        clocks?[partition] ?? PartitionClock(time: nil, floor: nil)
    }

    /// Per-partition mode: sets a partition's clock taken by `partitionClock(_:)` on its previous owner.
    public mutating func restoreClock(_ clock: PartitionClock, partition: Int32) {
        guard perPartition else { return }
        clocks![partition] = clock
    }

    /// True when a pane has ended for an input watermark of `inputWatermark` (this window's grace applied).
    public func paneEnded(_ pane: Int64, inputWatermark: Int64) -> Bool {
        (pane + 1) * paneSize <= inputWatermark - grace
    }

    /// True when no window that is still open covers the pane: a partial for it can no longer change a figure.
    public func paneForgotten(_ pane: Int64) -> Bool {
        guard let nextEnd else { return false }
        return (pane + 1) * paneSize <= nextEnd - size
    }

    /// Makes the watermark follow `setInputWatermark(_:)` rather than the largest event time seen.
    public mutating func followInputWatermark() {
        followsInputs = true
    }

    /// Sets the event time all input partitions have reached; the watermark is this minus the grace period.
    /// Never moves back.
    public mutating func setInputWatermark(_ eventTime: Int64) {
        inputWatermark = max(inputWatermark ?? eventTime, eventTime)
    }

    /// Moves the watermark forward to at least `eventTime` (e.g. when a partition is idle). Never moves back.
    public mutating func advanceWatermark(to eventTime: Int64) {
        externalWatermark = max(externalWatermark ?? eventTime, eventTime)
    }

    /// Closes every window instance whose end is ≤ the watermark and returns the non-empty ones, oldest first.
    public mutating func closeReady() -> [ClosedWindow<Key, Aggregate>] {
        for partial in sealPanes() { mergeSealed(partial) }
        guard let w = watermark, var end = nextEnd else { return [] }
        var out: [ClosedWindow<Key, Aggregate>] = []
        while end <= w {
            let start = end - size
            let firstPane = floorDiv(start, paneSize)
            let lastPane = floorDiv(end, paneSize)  // exclusive
            var merged: [Key: Aggregate] = [:]
            var samples = 0
            // Panes are merged in ascending order so floating-point sums are identical on every replay
            // (dictionary iteration order is seeded per process).
            if Int64(panes.count) < lastPane - firstPane {
                for p in panes.keys.filter({ $0 >= firstPane && $0 < lastPane }).sorted() {
                    samples += paneSamples[p] ?? 0
                    Self.mergeInto(&merged, panes[p]!)
                }
            } else {
                for p in firstPane..<lastPane {
                    guard let groups = panes[p] else { continue }
                    samples += paneSamples[p] ?? 0
                    Self.mergeInto(&merged, groups)
                }
            }
            closedAny = true
            if samples > 0, end >= emitFrom ?? end {
                out.append(ClosedWindow(name: name, start: start, end: end, samples: samples,
                                        lateSamples: lateSinceEmit, firstSequence: nil, groups: merged))
                lateSinceEmit = 0
            }
            // Drop panes that no later window covers: later windows start at ≥ end + slide − size.
            let keepFrom = floorDiv(end + slide - size, paneSize)
            for p in panes.keys where p < keepFrom {
                panes[p] = nil
                paneSamples[p] = nil
            }
            // Skip runs of empty windows: jump to the first end whose window holds the oldest remaining pane.
            var next = end + slide
            if let oldest = panes.keys.min() {
                let firstEndCovering = (floorDiv(oldest * paneSize, slide) + 1) * slide
                next = max(next, firstEndCovering)
            } else {
                next = max(next, (floorDiv(w, slide) + 1) * slide)
            }
            end = next
        }
        nextEnd = end
        return out
    }

    static func mergeInto(_ merged: inout [Key: Aggregate], _ groups: [Key: Aggregate]) {
        // Dictionary order is fine here: each key is merged once, so the order cannot change a sum.
        for (key, aggregate) in groups {
            if merged[key] == nil { merged[key] = aggregate } else { merged[key]!.merge(aggregate) }
        }
    }

    // MARK: Reshaping on reload

    /// The same windows with a new size, slide or grace, keeping every pane, when the pane size is unchanged
    /// (nil otherwise). Window ends already passed stay closed. A window that would reach back before the panes the
    /// old shape kept is not emitted: no figure is computed on part of its span.
    public func reshaped(to spec: WindowSpec) -> EventTimeWindows? {
        guard case let .eventTime(size, slide, grace) = spec.kind, gcd(size, slide) == paneSize else { return nil }
        var new = EventTimeWindows(name: spec.name, size: size, slide: slide, grace: grace)
        new.panes = panes
        new.paneSamples = paneSamples
        new.openPanes = openPanes
        new.oldestOpenPane = oldestOpenPane
        new.maxEventTime = maxEventTime
        new.externalWatermark = externalWatermark
        new.followsInputs = followsInputs
        new.inputWatermark = inputWatermark
        new.clocks = clocks
        new.closedAny = closedAny
        new.lateTotal = lateTotal
        new.lateSinceEmit = lateSinceEmit
        new.emitFrom = emitFrom
        if let oldNext = nextEnd {
            new.nextEnd = ceilDiv(oldNext, slide) * slide
            // Panes before the old shape's next window start may have been dropped.
            if closedAny { new.emitFrom = max(emitFrom ?? .min, oldNext - self.size + size) }
        }
        return new
    }
}

/// One source partition's aggregates for one pane of one window: what is merged into the global pane once the pane
/// is sealed, and what an instance owning the partition would hand to the instance that merges.
public struct PanePartial<Key: Hashable & Sendable & Codable, Aggregate: WindowAggregate>: Sendable, Codable {
    /// Window name.
    public var window: String
    /// Source (input) partition.
    public var partition: Int32
    /// Pane index (pane start = index × pane size).
    public var pane: Int64
    /// Samples accepted.
    public var samples: Int = 0
    /// Per-group aggregates.
    public var groups: [Key: Aggregate] = [:]

    /// Creates an empty partial.
    public init(window: String, partition: Int32, pane: Int64) {
        self.window = window
        self.partition = partition
        self.pane = pane
    }

    mutating func add(_ update: (inout [Key: Aggregate]) -> Void) {
        update(&groups)
        samples += 1
    }
}

/// A partition's event-time clock in per-partition mode: what moves with the partition to its next owner.
public struct PartitionClock: Sendable, Codable, Equatable {
    public var time: Int64?
    public var floor: Int64?
    public init(time: Int64?, floor: Int64?) {
        self.time = time
        self.floor = floor
    }

    mutating func advance(to eventTime: Int64) { time = max(time ?? eventTime, eventTime) }
}
