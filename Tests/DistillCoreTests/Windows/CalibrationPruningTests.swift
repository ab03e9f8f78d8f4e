import Foundation
import Testing

@testable import DistillCore

/// An open pane keeps one bottom-k calibration sample per input partition; pruning them to what the pane can still use
/// must leave every closed calibration window exactly as it was, and hold about one sample's worth per pane.
@Suite("Calibration sample pruning")
struct CalibrationPruningTests {
    @Test("pruned and unpruned window sets close bit-identical calibration windows; pruned holds a fraction")
    func prunedEqualsUnpruned() throws {
        let capacity = 64
        let partitions = 8
        let config = DistillStatisticsConfig(
            classes: 4, replicates: 8, windows: [],
            calibrationWindows: [.eventTime("cal", size: 20_000, slide: 20_000, grace: 300)],
            calibrationSampleCapacity: capacity)
        try config.validate()
        var pruned = DistillWindowSet(config: config)
        pruned.calibrationPrunePeriod = 200
        var whole = DistillWindowSet(config: config)
        whole.calibrationPrunePeriod = .max
        let key = DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old")
        var rng = SeededRandom(seed: 12)
        var closedPruned: [CalibrationWindow] = [], closedWhole: [CalibrationWindow] = []
        var heldPruned = 0, heldWhole = 0
        for i in 0..<12_000 {
            let s = randomSample(id: i, ts: Int64(i * 5), classes: 4, rng: &rng, labelProbability: 0.9)
            let partition = Int32(rng.int(partitions))
            pruned.ingest(s, groups: [key], partition: partition)
            whole.ingest(s, groups: [key], partition: partition)
            if i % 1_000 == 999 {
                heldPruned = max(heldPruned, pruned.openCalibrationSampleEntries)
                heldWhole = max(heldWhole, whole.openCalibrationSampleEntries)
            }
            closedPruned += pruned.closeReady().calibration
            closedWhole += whole.closeReady().calibration
        }
        pruned.advanceWatermark(to: 1_000_000)
        whole.advanceWatermark(to: 1_000_000)
        closedPruned += pruned.closeReady().calibration
        closedWhole += whole.closeReady().calibration

        #expect(closedPruned.count == 3 && closedWhole.count == 3)
        for (a, b) in zip(closedPruned, closedWhole) {
            #expect(a.start == b.start && a.samples == b.samples)
            #expect(a.groups == b.groups, "window at \(a.start): the same statistics and bottom-k samples")
            // Each window's samples exceeded the capacity, so pruning had something to drop.
            #expect(a.groups.values.allSatisfy { $0.sample.count == capacity })
        }
        // Three keys (two teachers, the student) in one open pane (sometimes two) over 8 partitions: unpruned up to
        // 8 × 64 each; pruned one 64 each plus what arrived since the last pruning (200 labeled samples at most).
        print("figure: calibration sample entries held: pruned \(heldPruned), unpruned \(heldWhole)")
        #expect(heldWhole > 3 * capacity * partitions / 2)
        #expect(heldPruned <= 2 * 3 * (capacity + 200), "held \(heldPruned)")
    }
}
