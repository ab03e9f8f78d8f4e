import DistillCore

// MARK: - LabelJoinBuffer

/// Joins late labels to samples by id within an event-time window, in bounded memory.
///
/// An unlabeled sample waits here (features dropped: the windows need only the logits) until its label arrives or
/// it falls out of the join window. A label that arrives first waits for its sample the same way. When either side
/// is full, the oldest entry is dropped and counted: memory never grows with traffic.
struct LabelJoinBuffer: Codable, Sendable {
    let windowMillis: Int64
    let capacity: Int
    /// Waiting samples by id, with the input partition each was read from.
    private var samples: [String: WaitingSample] = [:]
    private var sampleOrder: [JoinEntry] = []
    private var sampleHead = 0
    private var labels: [String: LabelRecord] = [:]
    private var labelOrder: [JoinEntry] = []
    private var labelHead = 0
    /// Labels whose sample had already left the buffer (or never came within the window).
    private(set) var tooLate = 0
    /// Samples that left the buffer without a label.
    private(set) var unlabeledExpired = 0

    init(windowMillis: Int64, capacity: Int) {
        self.windowMillis = windowMillis
        self.capacity = capacity
    }

    var waitingLabels: Int { labels.count }
    var waitingSamples: Int { samples.count }

    mutating func waitForLabel(_ sample: DistillSample, partition: Int32) {
        var kept = sample
        kept.features = []
        if samples.count >= capacity { evictOldestSample() }
        samples[sample.id] = WaitingSample(sample: kept, partition: partition)
        sampleOrder.append(JoinEntry(id: sample.id, ts: sample.timestamp))
    }

    mutating func waitForSample(_ label: LabelRecord) {
        if labels.count >= capacity { evictOldestLabel() }
        labels[label.id] = label
        labelOrder.append(JoinEntry(id: label.id, ts: label.timestamp))
    }

    mutating func takeLabel(for id: String) -> Int? {
        labels.removeValue(forKey: id)?.label
    }

    mutating func takeSample(for id: String) -> (DistillSample, partition: Int32)? {
        samples.removeValue(forKey: id).map { ($0.sample, $0.partition) }
    }

    /// Drops entries older than `eventTime − window`.
    mutating func expire(before eventTime: Int64) {
        let cutoff = eventTime - windowMillis
        while sampleHead < sampleOrder.count, sampleOrder[sampleHead].ts < cutoff { evictOldestSample() }
        while labelHead < labelOrder.count, labelOrder[labelHead].ts < cutoff { evictOldestLabel() }
        compact()
    }

    private mutating func evictOldestSample() {
        guard sampleHead < sampleOrder.count else { return }
        if samples.removeValue(forKey: sampleOrder[sampleHead].id) != nil { unlabeledExpired += 1 }
        sampleHead += 1
    }

    private mutating func evictOldestLabel() {
        guard labelHead < labelOrder.count else { return }
        if labels.removeValue(forKey: labelOrder[labelHead].id) != nil { tooLate += 1 }
        labelHead += 1
    }

    /// Keeps the order queues from growing with taken (already joined) entries.
    private mutating func compact() {
        if sampleHead > 4096 && sampleHead * 2 > sampleOrder.count {
            sampleOrder.removeFirst(sampleHead)
            sampleHead = 0
        }
        if labelHead > 4096 && labelHead * 2 > labelOrder.count {
            labelOrder.removeFirst(labelHead)
            labelHead = 0
        }
    }
}

/// An unlabeled sample waiting for its label, and the partition whose panes its labeled half belongs to.
struct WaitingSample: Codable, Sendable {
    var sample: DistillSample
    var partition: Int32
}

/// One waiting id and its event time, in arrival order.
struct JoinEntry: Codable, Sendable {
    var id: String
    var ts: Int64
}
