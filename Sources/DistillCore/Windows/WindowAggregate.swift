// MARK: - Window aggregates

/// A mergeable pane aggregate: merging the aggregates of disjoint sample sets equals aggregating their union.
public protocol WindowAggregate: Sendable, Codable {
    /// Adds another aggregate of the same shape.
    mutating func merge(_ other: Self)
}

extension DistillPaneStats: WindowAggregate {}
extension CalibrationStats: WindowAggregate {}

/// One emitted window instance with its merged per-group aggregates.
public struct ClosedWindow<Key: Hashable & Sendable & Codable, Aggregate: WindowAggregate>: Sendable, Codable {
    /// Window name from its spec.
    public var name: String
    /// Start of the window: event time in ms (inclusive). For count windows, the smallest event time seen.
    public var start: Int64
    /// End of the window: event time in ms (exclusive). For count windows, the largest event time seen + 1.
    public var end: Int64
    /// Samples accepted into the window (before group fan-out).
    public var samples: Int
    /// Late samples rejected by this window since the previous emitted instance.
    public var lateSamples: Int
    /// For count windows, the 0-based sequence number of the first sample; nil for event-time windows.
    public var firstSequence: Int?
    /// Merged aggregates per group.
    public var groups: [Key: Aggregate]

    /// Creates a closed window.
    public init(name: String, start: Int64, end: Int64, samples: Int, lateSamples: Int, firstSequence: Int?,
                groups: [Key: Aggregate]) {
        self.name = name
        self.start = start
        self.end = end
        self.samples = samples
        self.lateSamples = lateSamples
        self.firstSequence = firstSequence
        self.groups = groups
    }

    /// Merges the same window instance computed on another partition: sample and late counts add, and
    /// each group's aggregates merge (exact for counts, sums up to summation order). Both must have the
    /// same name and bounds (event-time windows); the caller decides when all partitions have reported.
    public mutating func merge(_ other: ClosedWindow) {
        precondition(name == other.name && start == other.start && end == other.end,
                     "ClosedWindow.merge: different window instances")
        samples += other.samples
        lateSamples += other.lateSamples
        for key in other.groups.keys.sorted(by: { "\($0)" < "\($1)" }) {
            let aggregate = other.groups[key]!
            if groups[key] == nil { groups[key] = aggregate } else { groups[key]!.merge(aggregate) }
        }
    }
}

/// Outcome of offering a sample to a window.
public enum IngestOutcome: Sendable, Equatable, Codable {
    /// The sample was folded into its pane.
    case accepted
    /// The sample's event time is below the watermark; it was counted as late and not folded in.
    case late
}

// MARK: - Leaf groups

extension ClosedWindow where Key == DistillGroupKey, Aggregate == DistillPaneStats {
    /// The window with every leaf group replaced by the groups it fans out to (``DistillGroupKey/fanOut``): pooled,
    /// per student, per slice, per student and slice. Each group is the sum of its leaves (and of any non-leaf entry
    /// under the same key, e.g. from a checkpoint written before leaves), added in the order of the keys' text, so
    /// the figures are the same on every run: counts exactly those of ingesting into every group, sums up to
    /// summation order.
    public func expandingLeaves() -> ClosedWindow {
        guard groups.keys.contains(where: \.isLeaf) else { return self }
        var out: [DistillGroupKey: DistillPaneStats] = [:]
        for key in groups.keys.sorted(by: { $0.description < $1.description }) {
            let stats = groups[key]!
            for target in key.fanOut {
                if out[target] == nil { out[target] = stats } else { out[target]!.merge(stats) }
            }
        }
        var window = self
        window.groups = out
        return window
    }
}
