// MARK: - Event-time sliding windows over panes

/// Event-time sliding windows built from panes of mergeable aggregates.
///
/// Panes have length `gcd(size, slide)`; pane i covers [i·pane, (i+1)·pane). Window instances end at
/// multiples of `slide` and cover [end − size, end). The watermark is max(event time seen) − grace (or
/// a larger value given to `advanceWatermark(to:)`); a window closes when watermark ≥ end. A sample with
/// event time < watermark is late: it is counted and never folded in, so closed windows never change and
/// every pane a sample lands in still belongs only to unclosed windows. Panes no future window needs are
/// dropped, so memory is O(size/pane × groups). Windows whose panes hold no samples are not emitted.
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

    /// Pane index → per-group aggregates.
    public private(set) var panes: [Int64: [Key: Aggregate]] = [:]
    /// Pane index → samples accepted.
    public private(set) var paneSamples: [Int64: Int] = [:]
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
    /// End of the next window instance to close, ms.
    public private(set) var nextEnd: Int64?
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

    /// Offers a sample with event time `eventTime`; if it is not late, `update` folds it into its pane's
    /// per-group aggregates (create missing groups with `dict[key, default: empty]`).
    @discardableResult
    public mutating func ingest(eventTime: Int64, _ update: (inout [Key: Aggregate]) -> Void) -> IngestOutcome {
        if let w = watermark, eventTime < w {
            lateTotal += 1
            lateSinceEmit += 1
            return .late
        }
        maxEventTime = max(maxEventTime ?? eventTime, eventTime)
        let firstEnd = (floorDiv(eventTime, slide) + 1) * slide
        // Safe to lower: every closed end is ≤ watermark ≤ eventTime < firstEnd.
        nextEnd = min(nextEnd ?? firstEnd, firstEnd)
        let pane = floorDiv(eventTime, paneSize)
        update(&panes[pane, default: [:]])
        paneSamples[pane, default: 0] += 1
        return .accepted
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
            if samples > 0 {
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
        for (key, aggregate) in groups {
            if merged[key] == nil { merged[key] = aggregate } else { merged[key]!.merge(aggregate) }
        }
    }
}
