import DistillCore
@testable import DistillDaemon
import Foundation
import Testing

/// The two stages without Kafka: workers over disjoint partitions, partials and progress handed to a merger engine,
/// against one single-instance engine over the same records.
@Suite("Scale-out stages")
struct MergeStageTests {
    static let partitions = 8

    /// Drives `workers` worker engines (worker w owns partitions p with p % workers == w) and one merger over the
    /// records (record i on partition i % 8), batch by batch, with a checkpoint (progress of every partition) after
    /// every round. Returns the merger's outputs and every partial published.
    /// With `idleEvery`, every partition goes idle after every that many rounds (the input pauses), then resumes.
    /// With `eachPartition`, a partition's progress reaches the merger right after its batch (owners report at
    /// different moments), and `knowsEnds` says whether the merger knows the partitions' end offsets (all records
    /// are produced up front), as the coordinator queries them.
    static func runStages(_ records: [[UInt8]], workers count: Int, config: DistillConfig, batch: Int = 97,
                          handOver: Bool = false, idleEvery: Int? = nil, eachPartition: Bool = false,
                          knowsEnds: Bool = true) throws
        -> (outputs: [EngineOutput], partials: [WindowSetPartial], merger: DistillEngine) {
        let workers = try (0..<count).map { _ in try DistillEngine(config: config, role: .worker) }
        let merger = try DistillEngine(config: config, role: .merger)
        merger.setSourcePartitions(Int32(partitions))
        var owner = (0..<partitions).map { $0 % count }
        for (w, engine) in workers.enumerated() {
            engine.partitionsAssigned((0..<partitions).filter { owner[$0] == w }.map(Int32.init))
        }
        var queues: [[(Int, [UInt8])]] = Array(repeating: [], count: partitions)
        for (i, r) in records.enumerated() { queues[i % partitions].append((i, r)) }
        if knowsEnds {
            merger.observeSamplesEnds(Dictionary(uniqueKeysWithValues: queues.indices.map {
                (Int32($0), Int64(queues[$0].count)) }))
        }
        var cursor = Array(repeating: 0, count: partitions)
        var outputs: [EngineOutput] = [], partials: [WindowSetPartial] = []
        var round = 0
        func deliver(_ out: [EngineOutput]) {
            for case .partial(let p) in out {
                partials.append(p)
                outputs += merger.handlePartial(p)
            }
        }
        while cursor.indices.contains(where: { cursor[$0] < queues[$0].count }) {
            for p in 0..<partitions {
                for (i, bytes) in queues[p][cursor[p]..<min(cursor[p] + batch, queues[p].count)] {
                    deliver(workers[owner[p]].handleSample(bytes, key: nil, at: InputPosition(
                        topic: "samples", partition: Int32(p), offset: Int64(i / partitions))))
                }
                cursor[p] = min(cursor[p] + batch, queues[p].count)
                if eachPartition {
                    outputs += merger.handleProgress(workers[owner[p]].progress(
                        of: Int32(p), samplesNext: Int64(cursor[p]), labelsNext: nil, stateToken: "\(round)/\(p)"))
                }
            }
            // Checkpoint: each partition's progress, from its owner.
            for p in 0..<partitions {
                outputs += merger.handleProgress(workers[owner[p]].progress(
                    of: Int32(p), samplesNext: Int64(cursor[p]), labelsNext: nil, stateToken: "\(round)"))
            }
            round += 1
            if let idleEvery, round % idleEvery == 0 {
                // The input pauses: every partition is idle, then its owner reports that at the next checkpoint.
                for p in 0..<partitions { deliver(workers[owner[p]].partitionIdle(Int32(p))) }
                for p in 0..<partitions {
                    outputs += merger.handleProgress(workers[owner[p]].progress(
                        of: Int32(p), samplesNext: Int64(cursor[p]), labelsNext: nil, stateToken: "\(round)-idle"))
                }
            }
            if handOver {
                // Every 5 rounds a partition moves: its state goes through the changelog form to the next owner.
                if round % 5 == 0 && count > 1 {
                    let p = Int32(round % partitions)
                    let from = owner[Int(p)], to = (from + 1) % count
                    let bytes = try StateBinaryEncoder().encode(workers[from].partitionState(p, samplesTopic: "samples"))
                    deliver(workers[from].partitionsRevoked([p]))
                    workers[to].restorePartition(try StateBinaryDecoder().decode(PartitionState.self, from: bytes))
                    workers[to].partitionsAssigned([p])
                    owner[Int(p)] = to
                }
            }
        }
        return (outputs, partials, merger)
    }

    /// The reference: one single-instance engine over the same records, read partition by partition in batches.
    static func singleEngine(_ records: [[UInt8]], config: DistillConfig) throws -> [EngineOutput] {
        DistillEngineWatermarkTests.runPartitioned(records, partitions: partitions, batch: 97,
                                                   engine: try DistillEngine(config: config))
    }

    /// Every window equal to the reference's, bit for bit, and nothing late or refused at the merge.
    static func expectBitIdentical(_ got: [DistillWindow], to reference: [DistillWindow], merger: DistillEngine) {
        #expect(got.count == reference.count && reference.count > 20)
        for (a, b) in zip(reference, got) {
            #expect(a.name == b.name && a.end == b.end && a.samples == b.samples)
            #expect(Bool(a.groups == b.groups), "\(a.name)/\(a.end): bit-identical")
        }
        #expect(merger.conflictingPartials == 0)
        #expect(merger.counters.lateSamples == 0)
    }

    /// Closed windows by window then end (the merger closes several at a checkpoint, the reference one at a time).
    static func windows(_ outputs: [EngineOutput]) -> [DistillWindow] {
        outputs.compactMap { if case .windowClosed(let w, _) = $0 { w } else { nil } }
            .sorted { ($0.name, $0.end) < ($1.name, $1.end) }
    }

    static func alertIDs(_ outputs: [EngineOutput]) -> [String] {
        outputs.compactMap { if case .decision(let d) = $0 { AlertEvent.id(for: d) } else { nil } }
    }

    @Test("1, 2 and 3 workers and a merger close the single engine's windows with bit-identical figures and the same alerts",
          arguments: [1, 2, 3])
    func stagesEqualSingleEngine(workers: Int) throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let records = RotationScenario().records()
        let reference = try Self.singleEngine(records, config: config)
        let (outputs, _, merger) = try Self.runStages(records, workers: workers, config: config)
        let expected = Self.windows(reference), got = Self.windows(outputs)
        // The stages close every window the reference does (the reference's watermark is the slowest partition's,
        // as is the merger's at the end of the input).
        #expect(got.count == expected.count && expected.count > 20)
        for (a, b) in zip(expected, got) {
            #expect(a.name == b.name && a.end == b.end && a.samples == b.samples)
            #expect(Bool(a.groups == b.groups), "\(a.name)/\(a.end): bit-identical")
        }
        #expect(Set(Self.alertIDs(outputs)) == Set(Self.alertIDs(reference)))
        #expect(!Self.alertIDs(reference).isEmpty)
        #expect(merger.conflictingPartials == 0)
    }

    @Test("Partitions handed between workers through their changelog state mid-stream: the same figures")
    func handOverKeepsFigures() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let records = RotationScenario().records()
        let reference = Self.windows(try Self.singleEngine(records, config: config))
        let (outputs, _, merger) = try Self.runStages(records, workers: 3, config: config, handOver: true)
        let got = Self.windows(outputs)
        #expect(got.count == reference.count)
        for (a, b) in zip(reference, got) { #expect(Bool(a.groups == b.groups), "\(a.name)/\(a.end)") }
        #expect(merger.conflictingPartials == 0)
    }

    @Test("The input pauses (every partition idle) and resumes, with 1, 2 and 3 workers: the single engine's figures; nothing of a paused partition's open pane is lost",
          arguments: [1, 2, 3])
    func pausesKeepFigures(workers: Int) throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let records = RotationScenario().records()
        let reference = Self.windows(try Self.singleEngine(records, config: config))
        let (outputs, _, merger) = try Self.runStages(records, workers: workers, config: config, handOver: workers > 1,
                                                     idleEvery: 2)
        Self.expectBitIdentical(Self.windows(outputs), to: reference, merger: merger)
    }

    @Test("Input resumes after a pause and the partitions' owners report one after another: a partition reported idle whose input has arrived keeps holding the watermark, so none of its panes is late",
          arguments: [1, 2, 3])
    func staggeredResume(workers: Int) throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let records = RotationScenario().records()
        let reference = Self.windows(try Self.singleEngine(records, config: config))
        let (outputs, _, merger) = try Self.runStages(records, workers: workers, config: config, idleEvery: 2,
                                                     eachPartition: true)
        Self.expectBitIdentical(Self.windows(outputs), to: reference, merger: merger)
        // Without the end offsets, the first partition to resume releases the others' panes: their partials are late.
        let (_, _, blind) = try Self.runStages(records, workers: workers, config: config, idleEvery: 2,
                                               eachPartition: true, knowsEnds: false)
        #expect(blind.counters.lateSamples > 0)
    }

    @Test("A partial sent again for a folded pane is not folded twice; one with other content is counted, not folded; one for a pane that already ended is late")
    func partialsReplacedNeverDoubled() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let records = RotationScenario().records()
        let (outputs, partials, merger) = try Self.runStages(records, workers: 2, config: config)
        let before = Self.windows(outputs).count
        let folded = try #require(partials.last { merger.mergeBook.folded[$0.slot] != nil })
        // The same partial again (a partition reprocessed by its next owner): nothing changes.
        #expect(merger.handlePartial(folded).isEmpty)
        #expect(merger.conflictingPartials == 0)
        // Other content for a folded slot: refused and counted.
        var other = folded
        other.statistics?.samples += 1
        _ = merger.handlePartial(other)
        #expect(merger.conflictingPartials == 1)
        // A pane that ended without ever being folded here: late at the merge.
        var stray = folded
        stray.statistics?.partition = 99
        _ = merger.handlePartial(stray)
        #expect(merger.conflictingPartials == 2)
        #expect(merger.counters.lateSamples == folded.samples)
        #expect(before > 20)
    }

    @Test("The merger waits for every partition's progress, and an idle partition stops holding the watermark")
    func globalWatermark() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let merger = try DistillEngine(config: config, role: .merger)
        merger.setSourcePartitions(3)
        func progress(_ p: Int32, _ t: Int64?, holds: Bool = true) -> PartitionProgress {
            PartitionProgress(partition: p, eventTime: t, holds: holds, samplesNext: nil, labelsNext: nil,
                              stateToken: "")
        }
        _ = merger.handleProgress(progress(0, 5_000))
        _ = merger.handleProgress(progress(1, 9_000))
        #expect(merger.globalInputWatermark() == nil, "partition 2 has not reported")
        _ = merger.handleProgress(progress(2, nil))
        #expect(merger.globalInputWatermark() == nil, "partition 2 holds without an event time")
        _ = merger.handleProgress(progress(2, 7_000))
        #expect(merger.globalInputWatermark() == 5_000, "the slowest partition that holds")
        _ = merger.handleProgress(progress(0, 5_000, holds: false))
        #expect(merger.globalInputWatermark() == 7_000, "an idle partition does not hold")
        for p: Int32 in 0...2 { _ = merger.handleProgress(progress(p, Int64(p) * 1_000 + 10_000, holds: false)) }
        #expect(merger.globalInputWatermark() == 12_000, "all idle: the newest")
        #expect(merger.idlePartitions == [0, 1, 2])
        merger.observeSamplesEnds([1: 40])
        #expect(merger.globalInputWatermark() == 11_000, "idle but with unread input: holds again")
    }

    @Test("Per-partition windows: a sample is late against its own partition's watermark only, and an idle partition's panes are published, not sealed")
    func perPartitionWatermarks() {
        var w = EventTimeWindows<String, Counter>(name: "w", size: 10, slide: 10, grace: 2)
        w.watermarkPerPartition()
        #expect(w.ingest(eventTime: 100, partition: 0) { $0["a", default: Counter()].n += 1 } == .accepted)
        #expect(w.ingest(eventTime: 50, partition: 1) { $0["a", default: Counter()].n += 1 } == .accepted,
                "partition 1 is not late because partition 0 is ahead")
        #expect(w.ingest(eventTime: 99, partition: 0) { $0["a", default: Counter()].n += 1 } == .accepted)
        #expect(w.ingest(eventTime: 97, partition: 0) { $0["a", default: Counter()].n += 1 } == .late)
        #expect(w.ingest(eventTime: 97, partition: 1) { $0["a", default: Counter()].n += 1 } == .accepted)
        #expect(w.ingest(eventTime: 60, partition: 1) { $0["a", default: Counter()].n += 1 } == .late)
        // Partition 0 is at 100 − 2: panes ending by 98 are sealed; its pane [90, 100) and [100, 110) stay open.
        let sealed = w.sealPanes()
        #expect(sealed.map { "\($0.partition)/\($0.pane)" } == ["1/5"], "partition 1's [50, 60) ended")
        // What an idle partition publishes: its open panes, still open; a later sample for them is not late.
        let idle = w.openPartials(partition: 0)
        #expect(idle.map { "\($0.partition)/\($0.pane)/\($0.samples)" } == ["0/9/1", "0/10/1"])
        #expect(w.ingest(eventTime: 105, partition: 0) { $0["a", default: Counter()].n += 1 } == .accepted,
                "publishing an idle partition's panes does not seal them")
        #expect(w.openPartials(partition: 0).map(\.samples) == [1, 2])
        #expect(w.openPartials(partition: 1).map(\.pane) == [9])
    }

    @Test("scale_out with a count window is refused, naming the window")
    func countWindowsRefused() {
        let yaml = """
            model: {classes: [a, b, c, d]}
            windows:
              fast: {size: 60s, slide: 10s, grace: 1s}
              drift: {count: 1000, slide_count: 100}
            scale_out: {enabled: true}
            """
        #expect(throws: Never.self) { _ = try DistillConfig.parse(yaml.replacingOccurrences(of: "true", with: "false")) }
        #expect(throws: ConfigError.self) { _ = try DistillConfig.parse(yaml) }
        do {
            _ = try DistillConfig.parse(yaml)
        } catch {
            #expect("\(error)".contains("scale_out.enabled") && "\(error)".contains("drift"))
        }
    }
}

/// A trivial mergeable aggregate for window tests.
struct Counter: WindowAggregate, Equatable {
    var n = 0
    mutating func merge(_ other: Counter) { n += other.n }
}
