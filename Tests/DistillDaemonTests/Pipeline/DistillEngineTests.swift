import DistillCore
@testable import DistillDaemon
import Foundation
import Testing

/// A small deterministic scenario: two teacher versions agree until `changeAt`, then v2's soft labels shift.
struct RotationScenario {
    var seconds = 600
    var perSecond = 10
    var changeAt: Int64 = 300_000
    var start: Int64 = 1_795_430_000_000
    var shift: [Float] = [1.5, -1.5, 0, 0]

    /// The sample records, in event-time order.
    func records() -> [[UInt8]] {
        var rng = SplitMix(seed: 7)
        var out: [[UInt8]] = []
        for i in 0..<(seconds * perSecond) {
            let ts = start + Int64(i) * 1000 / Int64(perSecond)
            let z = (0..<4).map { _ in Float(rng.normal() * 2) }
            let changed = ts - start >= changeAt
            let v2 = changed ? zip(z, shift).map { $0 + $1 } : z
            let label = z.indices.max { z[$0] < z[$1] }!
            func list(_ v: [Float]) -> String { "[" + v.map { "\($0)" }.joined(separator: ",") + "]" }
            let json = """
                {"id":"req-\(i)","ts":\(ts),"teachers":[{"version":"v1","logits":\(list(z))},\
                {"version":"v2","logits":\(list(v2))}],"label":\(label)}
                """
            out.append(Array(json.utf8))
        }
        return out
    }
}

/// Deterministic normal draws for scenarios.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func normal() -> Double {
        let u = max(uniform(), 1e-12), v = uniform()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
}

/// Every window report among the engine's outputs, in order.
func windowReports(_ outputs: [EngineOutput]) -> [WindowReport] {
    var out: [WindowReport] = []
    for case .windowClosed(_, let reports) in outputs { out += reports }
    return out
}

let scenarioConfig = """
    model: {classes: [a, b, c, d]}
    windows:
      fast: {size: 60s, slide: 10s, grace: 1s}
      drift: {size: 120s, slide: 20s, grace: 1s}
    triggers:
      teacher_kl_drift: {threshold: 0.05, min_samples: 200, cooldown: 10m}
      teacher_accuracy_delta: {min_samples: 200}
      teacher_ece_delta: {min_samples: 200}
      teacher_regressed: {min_samples: 200}
    labels: {join_window: 1m}
    """

/// The engine end to end, without Kafka.
@Suite("Distill engine")
struct DistillEngineTests {
    static func run(_ records: [[UInt8]], engine: DistillEngine) -> [EngineOutput] {
        var out: [EngineOutput] = []
        for (i, bytes) in records.enumerated() {
            out += engine.handleSample(bytes, key: nil, at: InputPosition(topic: "samples", partition: 0, offset: Int64(i)))
        }
        return out
    }

    static func fired(_ outputs: [EngineOutput]) -> [TriggerDecision] {
        outputs.compactMap { if case .decision(let d) = $0, d.kind == .fire { d } else { nil } }
    }

    @Test("A teacher rotation fires teacher_kl_drift once, only after the change; the stable stretch fires nothing")
    func klDriftFiresOnce() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let scenario = RotationScenario()
        let outputs = Self.run(scenario.records(), engine: try DistillEngine(config: config))
        let kl = Self.fired(outputs).filter { $0.rule == "teacher_kl_drift" }
        #expect(kl.count == 1, "one episode")
        let first = try #require(kl.first)
        #expect(first.windowEnd > scenario.start + scenario.changeAt, "fires only after the change")
        #expect(first.lower.map { $0 >= 0.05 } == true, "the interval's near end is past the threshold")
        let beforeChange = Self.fired(outputs).filter { $0.windowEnd <= scenario.start + scenario.changeAt }
        #expect(beforeChange.isEmpty, "nothing fires while the teachers agree: \(beforeChange.map(\.rule))")
        let reports = windowReports(outputs)
        #expect(reports.contains { $0.window == "drift" } && reports.contains { $0.window == "fast" })
    }

    @Test("Reprocessing gives the same alert ids; an engine that already emitted them sends none again")
    func deterministicAndDeduplicated() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let records = RotationScenario().records()
        let a = Self.fired(Self.run(records, engine: try DistillEngine(config: config)))
        let b = Self.fired(Self.run(records, engine: try DistillEngine(config: config)))
        #expect(!a.isEmpty)
        #expect(a.map { AlertEvent.id(for: $0) } == b.map { AlertEvent.id(for: $0) })
        let engine = try DistillEngine(config: config)
        _ = Self.run(records, engine: engine)
        let again = Self.fired(Self.run(records, engine: engine))
        #expect(again.isEmpty, "duplicates by id are ignored and already-emitted alerts suppressed")
        #expect(engine.counters.duplicateSamples == records.count)
    }

    @Test("Bad records become dead letters with their reason and leave every figure unchanged")
    func badRecordsAreDeadLettered() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let clean = RotationScenario(seconds: 200).records()
        let bad: [(bytes: String, reason: String)] = [
            ("{\"id\":\"x1\",\"ts\":1795430000500,\"teachers\":[{\"version\":\"v1\",\"logits\":[1,2,3]}]}",
             "wrong_length"),
            ("{\"id\":\"x2\",\"ts\":1795430000500,\"teachers\":[{\"version\":\"v1\",\"logits\":[1,2,3,NaN]}]}",
             "not_finite"),
            ("{\"ts\":1795430000500,\"teachers\":[{\"version\":\"v1\",\"logits\":[1,2,3,4]}]}", "missing"),
            ("{\"id\":\"x4\",\"ts\":1795430000500,\"label\":9,\"teachers\":[{\"version\":\"v1\",\"logits\":[1,2,3,4]}]}",
             "out_of_range"),
            ("not json", "wrong_type"),
        ]
        var mixed = clean
        for (i, b) in bad.enumerated() { mixed.insert(Array(b.bytes.utf8), at: 100 + i * 300) }
        let cleanOut = Self.run(clean, engine: try DistillEngine(config: config))
        let mixedOut = Self.run(mixed, engine: try DistillEngine(config: config))
        let letters = mixedOut.compactMap { if case .deadLetter(let r) = $0 { r } else { nil } }
        #expect(letters.count == bad.count)
        #expect(letters.map(\.reason) == bad.map(\.reason), "\(letters.map(\.message))")
        #expect(letters.allSatisfy { $0.source.topic == "samples" && !$0.message.isEmpty })
        func reports(_ o: [EngineOutput]) -> [WindowReport] {
            windowReports(o)
        }
        #expect(reports(cleanOut) == reports(mixedOut), "bad records never touch window state")
    }

    @Test("A late label updates the labeled statistics of its sample's window")
    func lateLabelJoin() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let engine = try DistillEngine(config: config)
        let t0: Int64 = 1_795_430_000_000
        var outputs: [EngineOutput] = []
        for i in 0..<300 {
            let json = """
                {"id":"u\(i)","ts":\(t0 + Int64(i) * 100),"teachers":[{"version":"v1","logits":[3,0,0,0]},\
                {"version":"v2","logits":[3,0,1,0]}]}
                """
            outputs += engine.handleSample(Array(json.utf8), key: nil,
                                           at: InputPosition(topic: "samples", partition: 0, offset: Int64(i)))
            if i % 2 == 0 {
                let label = "{\"id\":\"u\(i)\",\"label\":0,\"ts\":\(t0 + Int64(i) * 100)}"
                outputs += engine.handleLabel(Array(label.utf8), key: nil,
                                              at: InputPosition(topic: "labels", partition: 0, offset: Int64(i)))
            }
        }
        outputs += engine.advance(to: t0 + 200_000)
        #expect(engine.counters.labelsJoined == 150)
        let fast = outputs.flatMap { output -> [WindowReport] in
            if case .windowClosed(_, let r) = output { return r.filter { $0.window == "fast" && $0.group.slice == nil } }
            return []
        }
        // The 60 s window that holds the whole 30 s stream.
        let report = try #require(fast.max { $0.samples < $1.samples })
        #expect(report.samples == 450, "300 sample arrivals + 150 label joins")
        // Only half the samples got a label, and every labeled one is right: accuracy 1 on 150 samples.
        #expect(report.figures.newTeacherAccuracy?.value == 1.0)
        #expect(report.figures.teacherLabeledSamples == 150)
    }
}

extension DistillEngineTests {
    @Test("Join counters kept by each buffer's change equal a recount over every buffer (a worker with 4 partitions): labels waiting, labels too late")
    func joinCountersIncremental() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let engine = try DistillEngine(config: config, role: .worker)
        let window = config.labels.joinWindowMillis
        let t0: Int64 = 1_795_430_000_000
        let step = max(window / 40, 1)
        var orphans: [Int32: [Int64]] = [:]  // label timestamps with no sample, per partition
        var lastSample: [Int32: Int64] = [:]
        for i in 0..<400 {
            let p = Int32(i % 4), ts = t0 + Int64(i) * step
            let sample = """
                {"id":"s\(i)","ts":\(ts),"teachers":[{"version":"v1","logits":[3,0,0,0]},\
                {"version":"v2","logits":[3,0,1,0]}]}
                """
            if i % 3 == 0 {  // the label first: it waits, then its sample joins it
                let label = "{\"id\":\"s\(i)\",\"label\":0,\"ts\":\(ts)}"
                _ = engine.handleLabel(Array(label.utf8), key: nil, at: InputPosition(topic: "labels", partition: p, offset: 0))
            }
            _ = engine.handleSample(Array(sample.utf8), key: nil, at: InputPosition(topic: "samples", partition: p, offset: 0))
            lastSample[p] = ts
            if i % 5 == 0 {  // a label whose sample never comes
                let label = "{\"id\":\"orphan\(i)\",\"label\":1,\"ts\":\(ts)}"
                _ = engine.handleLabel(Array(label.utf8), key: nil, at: InputPosition(topic: "labels", partition: p, offset: 0))
                orphans[p, default: []].append(ts)
            }
            if i % 37 == 0 {
                let live = engine.counters
                engine.countJoins()
                #expect(engine.counters.labelsWaiting == live.labelsWaiting && engine.counters.labelsTooLate == live.labelsTooLate,
                        "after record \(i)")
            }
        }
        // Independently: an orphan label is too late once a later sample of its partition is past its time + window.
        var tooLate = 0, waiting = 0
        for (p, times) in orphans {
            for ts in times { if ts < lastSample[p]! - window { tooLate += 1 } else { waiting += 1 } }
        }
        #expect(tooLate > 0 && waiting > 0, "the scenario has both")
        #expect(engine.counters.labelsTooLate == tooLate)
        #expect(engine.counters.labelsWaiting == waiting)
    }
}

/// Snapshots: what a crash-restart needs.
@Suite("Distill engine state")
struct DistillEngineStateTests {
    @Test("A restored engine continues exactly like one that never stopped")
    func snapshotRestore() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let records = RotationScenario().records()
        let half = records.count / 2
        let reference = try DistillEngine(config: config)
        let expected = DistillEngineTests.run(records, engine: reference)

        let first = try DistillEngine(config: config)
        let before = DistillEngineTests.run(Array(records[..<half]), engine: first)
        let snapshot = try first.snapshot()
        let second = try DistillEngine(config: config)
        try second.restore(snapshot)
        var after: [EngineOutput] = []
        for (i, bytes) in records[half...].enumerated() {
            after += second.handleSample(bytes, key: nil,
                                         at: InputPosition(topic: "samples", partition: 0, offset: Int64(half + i)))
        }
        func ids(_ o: [EngineOutput]) -> [String] {
            o.compactMap { if case .decision(let d) = $0 { AlertEvent.id(for: d)! } else { nil } }
        }
        func reports(_ o: [EngineOutput]) -> [WindowReport] {
            windowReports(o)
        }
        #expect(!ids(expected).isEmpty)
        #expect(ids(before) + ids(after) == ids(expected))
        #expect(reports(before) + reports(after) == reports(expected))
    }

    @Test("A snapshot taken under other windows is refused with a clear reason")
    func incompatible() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let engine = try DistillEngine(config: config)
        _ = DistillEngineTests.run(Array(RotationScenario().records().prefix(100)), engine: engine)
        let other = try DistillConfig.parse(scenarioConfig.replacingOccurrences(of: "size: 60s", with: "size: 30s"))
        let error = #expect(throws: EngineStateError.self) { try DistillEngine(config: other).restore(engine.snapshot()) }
        #expect(error?.description.contains("windows") == true)
    }
}

/// Many partitions read batch by batch, as Kafka delivers them.
@Suite("Distill engine watermarks")
struct DistillEngineWatermarkTests {
    @Test("Samples spread over 4 partitions and read in per-partition batches are not late, and fire the same alerts")
    func partitionedInputIsNotLate() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let records = RotationScenario().records()
        let reference = try DistillEngine(config: config)
        let expected = DistillEngineTests.run(records, engine: reference)

        // Partition p holds records i with i % 4 == p, in order; batches of 500 per partition in turn.
        var queues: [[(Int, [UInt8])]] = Array(repeating: [], count: 4)
        for (i, r) in records.enumerated() { queues[i % 4].append((i, r)) }
        let engine = try DistillEngine(config: config)
        engine.partitionsAssigned([0, 1, 2, 3])
        var outputs: [EngineOutput] = []
        var cursor = [0, 0, 0, 0]
        while cursor.enumerated().contains(where: { $0.element < queues[$0.offset].count }) {
            for p in 0..<4 {
                for (i, bytes) in queues[p][cursor[p]..<min(cursor[p] + 500, queues[p].count)] {
                    outputs += engine.handleSample(bytes, key: nil, at: InputPosition(
                        topic: "samples", partition: Int32(p), offset: Int64(i / 4)))
                }
                cursor[p] = min(cursor[p] + 500, queues[p].count)
            }
        }
        #expect(engine.counters.lateSamples == 0, "the slowest partition holds the watermark")
        #expect(reference.counters.lateSamples == 0)
        func fired(_ o: [EngineOutput]) -> [String] {
            DistillEngineTests.fired(o).map { "\($0.rule)@\($0.window)/\($0.windowEnd)" }
        }
        #expect(!fired(expected).isEmpty)
        #expect(fired(outputs) == fired(expected))
        let counts = windowReports(outputs).map { "\($0.window)/\($0.end)/\($0.samples)" }
        #expect(counts == windowReports(expected).map { "\($0.window)/\($0.end)/\($0.samples)" })
    }
}

extension DistillEngineWatermarkTests {
    /// Feeds records spread over `partitions` (record i to partition i % partitions), `batch` per partition in turn.
    static func runPartitioned(_ records: [[UInt8]], partitions: Int, batch: Int,
                               engine: DistillEngine) -> [EngineOutput] {
        var queues: [[(Int, [UInt8])]] = Array(repeating: [], count: partitions)
        for (i, r) in records.enumerated() { queues[i % partitions].append((i, r)) }
        engine.partitionsAssigned((0..<partitions).map(Int32.init))
        var outputs: [EngineOutput] = []
        var cursor = Array(repeating: 0, count: partitions)
        while cursor.indices.contains(where: { cursor[$0] < queues[$0].count }) {
            for p in 0..<partitions {
                for (i, bytes) in queues[p][cursor[p]..<min(cursor[p] + batch, queues[p].count)] {
                    outputs += engine.handleSample(bytes, key: nil, at: InputPosition(
                        topic: "samples", partition: Int32(p), offset: Int64(i / partitions)))
                }
                cursor[p] = min(cursor[p] + batch, queues[p].count)
            }
        }
        return outputs
    }

    static func closedWindows(_ outputs: [EngineOutput]) -> [DistillWindow] {
        outputs.compactMap { if case .windowClosed(let w, _) = $0 { w } else { nil } }
    }

    @Test("Window state is kept per partition: any interleaving gives bit-identical figures, equal to one partition's")
    func perPartitionStateIsExact() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let records = RotationScenario().records()
        let a = Self.closedWindows(Self.runPartitioned(records, partitions: 3, batch: 1,
                                                       engine: try DistillEngine(config: config)))
        let b = Self.closedWindows(Self.runPartitioned(records, partitions: 3, batch: 211,
                                                       engine: try DistillEngine(config: config)))
        let one = Self.closedWindows(DistillEngineTests.run(records, engine: try DistillEngine(config: config)))
        #expect(a.count == b.count && a.count == one.count && a.count > 20)
        // The online student learns in arrival order, so its prequential group legitimately differs.
        let served = { (key: DistillGroupKey) in key.student != DistillEngine.onlineStudentVersion }
        var compared = 0
        for ((x, y), z) in zip(zip(a, b), one) {
            #expect(x.name == y.name && x.end == y.end && x.samples == y.samples && x.samples == z.samples)
            for (key, stats) in x.groups where served(key) {
                #expect(stats == y.groups[key], "\(x.name)/\(x.end) \(key): bit-identical across interleavings")
                let ref = try #require(z.groups[key])
                for j in stats.sums.values.indices {
                    #expect(abs(stats.sums.values[j] - ref.sums.values[j]) <= 1e-9 * max(1, abs(ref.sums.values[j])))
                }
                compared += 1
            }
        }
        #expect(compared > 50)
    }

    @Test("Partition numbers outside the engine's dense watermark table give the same windows as small ones")
    func sparsePartitionNumbers() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let records = RotationScenario().records()
        func run(_ partitions: [Int32]) throws -> [DistillWindow] {
            let engine = try DistillEngine(config: config)
            engine.partitionsAssigned(partitions)
            var outputs: [EngineOutput] = []
            for (i, bytes) in records.enumerated() {
                let p = partitions[i % partitions.count]
                outputs += engine.handleSample(bytes, key: nil, at: InputPosition(topic: "samples", partition: p,
                                                                                   offset: Int64(i)))
            }
            #expect(engine.counters.lateSamples == 0)
            return Self.closedWindows(outputs)
        }
        let dense = try run([0, 1, 2])
        let sparse = try run([0, 1, 70_000])
        #expect(dense.count > 20 && dense.count == sparse.count)
        for (a, b) in zip(dense, sparse) {
            #expect(a.name == b.name && a.end == b.end && a.samples == b.samples)
            for (key, stats) in a.groups where key.student != DistillEngine.onlineStudentVersion {
                #expect(stats == b.groups[key], "\(a.name)/\(a.end) \(key)")
            }
        }
    }

    @Test("An assigned partition with no data holds the watermark until it is declared idle")
    func idlePartition() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let engine = try DistillEngine(config: config)
        engine.partitionsAssigned([0, 1])
        var outputs: [EngineOutput] = []
        for (i, bytes) in RotationScenario(seconds: 200).records().enumerated() {
            outputs += engine.handleSample(bytes, key: nil, at: InputPosition(topic: "samples", partition: 0,
                                                                               offset: Int64(i)))
        }
        #expect(windowReports(outputs).isEmpty, "partition 1 has not delivered: no window may close")
        outputs += engine.partitionIdle(1)
        #expect(!windowReports(outputs).isEmpty, "once partition 1 is idle, partition 0 drives the watermark")
        #expect(engine.counters.lateSamples == 0)
    }
}

extension DistillEngineTests {
    @Test("Samples waiting for labels share one teacher-version list's storage when their lists are equal, and keep their own when not")
    func waitingSamplesShareVersionLists() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let engine = try DistillEngine(config: config)
        let t0: Int64 = 1_795_430_000_000
        let lists = [["v1", "v2"], ["v1", "v2"], ["v1", "v3"], ["v1", "v3"], ["v1", "v2"]]
        for (i, versions) in lists.enumerated() {
            let teachers = versions.map { "{\"version\":\"\($0)\",\"logits\":[3,0,0,0]}" }.joined(separator: ",")
            let json = "{\"id\":\"w\(i)\",\"ts\":\(t0 + Int64(i)),\"teachers\":[\(teachers)]}"
            #expect(engine.handleSample(Array(json.utf8), key: nil,
                                        at: InputPosition(topic: "samples", partition: 0, offset: Int64(i))).isEmpty)
        }
        var join = try #require(engine.labelJoins[0])
        var waiting: [DistillSample] = []
        for i in lists.indices {
            let taken = join.takeSample(for: "w\(i)")
            waiting.append(try #require(taken).sample)
        }
        #expect(waiting.map(\.teacherVersions) == lists)
        let storage = waiting.map { $0.teacherVersions.withUnsafeBufferPointer { $0.baseAddress } }
        #expect(storage[0] == storage[1] && storage[2] == storage[3], "equal lists share storage")
        #expect(storage[1] != storage[2] && storage[3] != storage[4], "a new list has its own")
    }
}
