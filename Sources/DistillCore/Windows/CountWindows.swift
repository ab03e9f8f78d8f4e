// MARK: - Count-based windows

/// Count-based sliding windows: the last `size` samples, emitted every `slide` samples.
///
/// Samples are folded into panes of `slide` samples; each time a pane fills and at least `size/slide`
/// panes exist, the window over the last `size/slide` panes is emitted. Arrival order defines the window
/// (there is no lateness). Memory is O(size/slide × groups).
public struct CountWindows<Key: Hashable & Sendable & Codable, Aggregate: WindowAggregate>: Sendable, Codable {
    /// Window name.
    public let name: String
    /// Samples per window.
    public let size: Int
    /// Samples per slide (pane).
    public let slide: Int

    struct Pane: Sendable, Codable {
        var groups: [Key: Aggregate] = [:]
        var samples = 0
        var minTime = Int64.max
        var maxTime = Int64.min
        var firstSequence = 0
    }

    /// Full panes, oldest first (at most size/slide − 1 kept between emissions).
    var full: [Pane] = []
    /// The pane being filled.
    var current = Pane()
    /// Samples seen so far.
    public private(set) var sequence = 0
    var ready: [ClosedWindow<Key, Aggregate>] = []

    /// Creates count windows.
    public init(name: String, size: Int, slide: Int) {
        precondition(slide > 0 && size >= slide && size % slide == 0, "CountWindows: size must be a multiple of slide")
        self.name = name
        self.size = size
        self.slide = slide
    }

    /// Creates count windows from a count spec.
    public init(spec: WindowSpec) {
        guard case let .count(size, slide) = spec.kind else {
            preconditionFailure("CountWindows: spec \(spec.name) is not a count window")
        }
        self.init(name: spec.name, size: size, slide: slide)
    }

    /// Adds a sample; `update` folds it into the current pane's per-group aggregates.
    public mutating func ingest(eventTime: Int64, _ update: (inout [Key: Aggregate]) -> Void) {
        if current.samples == 0 { current.firstSequence = sequence }
        update(&current.groups)
        current.samples += 1
        current.minTime = min(current.minTime, eventTime)
        current.maxTime = max(current.maxTime, eventTime)
        sequence += 1
        guard current.samples == slide else { return }
        full.append(current)
        current = Pane()
        let panesPerWindow = size / slide
        guard full.count >= panesPerWindow else { return }
        var merged: [Key: Aggregate] = [:]
        var lo = Int64.max, hi = Int64.min
        for pane in full {
            EventTimeWindows<Key, Aggregate>.mergeInto(&merged, pane.groups)
            lo = min(lo, pane.minTime)
            hi = max(hi, pane.maxTime)
        }
        ready.append(ClosedWindow(name: name, start: lo, end: hi + 1, samples: size, lateSamples: 0,
                                  firstSequence: full[0].firstSequence, groups: merged))
        full.removeFirst()
    }

    /// Returns and clears the windows completed since the last call.
    public mutating func closeReady() -> [ClosedWindow<Key, Aggregate>] {
        defer { ready.removeAll() }
        return ready
    }
}
