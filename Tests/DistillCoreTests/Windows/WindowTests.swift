import DistillCore
import Foundation
import Numerics
import Testing

// MARK: - Window semantics

/// A trivial aggregate for window tests: the list of sample ids (merge = concatenation, sorted for comparison).
struct IDList: WindowAggregate, Equatable {
    var ids: [Int] = []
    mutating func merge(_ other: IDList) { ids += other.ids }
}

@Suite("Windows")
struct WindowTests {
    typealias W = EventTimeWindows<String, IDList>

    static func add(_ w: inout W, _ id: Int, _ ts: Int64) -> IngestOutcome {
        w.ingest(eventTime: ts) { $0["g", default: IDList()].ids.append(id) }
    }

    static func ids(_ c: ClosedWindow<String, IDList>) -> [Int] { (c.groups["g"]?.ids ?? []).sorted() }

    @Test("sliding windows: bounds, contents, slide and expiry")
    func slideAndExpiry() {
        var w = W(name: "t", size: 10, slide: 5, grace: 0)
        #expect(w.paneSize == 5)
        // Samples at ts 1, 4, 6, 12, 14, 17; ids equal ts.
        for ts in [1, 4, 6, 12] { #expect(Self.add(&w, ts, Int64(ts)) == .accepted) }
        // Watermark 12: windows ending at 5 and 10 are closed.
        var closed = w.closeReady()
        #expect(closed.map { [$0.start, $0.end] } == [[-5, 5], [0, 10]])
        #expect(closed.map(Self.ids) == [[1, 4], [1, 4, 6]])
        #expect(closed.map(\.samples) == [2, 3])
        for ts in [14, 17] { _ = Self.add(&w, ts, Int64(ts)) }
        closed = w.closeReady()  // watermark 17 → window [5, 15)
        #expect(closed.map { [$0.start, $0.end] } == [[5, 15]])
        #expect(closed.map(Self.ids) == [[6, 12, 14]])
        // Panes before 10 are no longer needed by any future window.
        #expect(w.panes.keys.allSatisfy { $0 >= 2 })
        w.advanceWatermark(to: 100)
        closed = w.closeReady()
        #expect(closed.map { [$0.start, $0.end] } == [[10, 20], [15, 25]])
        #expect(closed.map(Self.ids) == [[12, 14, 17], [17]])
        #expect(w.panes.isEmpty)
    }

    @Test("grace period: samples within grace are accepted, later ones counted late and never folded in")
    func graceAndLate() {
        var w = W(name: "t", size: 10, slide: 10, grace: 3)
        _ = Self.add(&w, 1, 2)
        _ = Self.add(&w, 2, 12)   // watermark 9: window [0,10) still open
        #expect(w.closeReady().isEmpty)
        #expect(Self.add(&w, 3, 9) == .accepted)   // 9 ≥ watermark 9: within grace
        _ = Self.add(&w, 4, 14)   // watermark 11 → closes [0, 10)
        let first = w.closeReady()
        #expect(first.map(Self.ids) == [[1, 3]])
        #expect(Self.add(&w, 5, 8) == .late)       // below watermark 11
        #expect(Self.add(&w, 6, 10) == .late)      // below watermark even though its window is open
        #expect(w.lateTotal == 2)
        w.advanceWatermark(to: 1000)
        let second = w.closeReady()
        #expect(second.map(Self.ids) == [[2, 4]])  // late samples 5 and 6 are nowhere
        #expect(second.map(\.lateSamples) == [2])
        #expect(first.map(\.lateSamples) == [0])
    }

    @Test("an early out-of-order sample before the first window end is not lost")
    func outOfOrderBeforeFirstClose() {
        var w = W(name: "t", size: 10, slide: 10, grace: 20)
        _ = Self.add(&w, 1, 35)
        _ = Self.add(&w, 2, 16)  // earlier window than the first sample's
        w.advanceWatermark(to: 100)
        let closed = w.closeReady()
        #expect(closed.map { $0.start } == [10, 30])
        #expect(closed.map(Self.ids) == [[2], [1]])
    }

    @Test("a long gap emits no empty windows and does not loop per slide")
    func gapSkipping() {
        var w = W(name: "t", size: 60_000, slide: 1_000, grace: 0)
        _ = Self.add(&w, 1, 500)
        _ = Self.add(&w, 2, 10_000_000_000)  // ~115 days later
        let closed = w.closeReady()
        #expect(closed.count == 60)  // windows [.., 1000) ... [.., 60000) hold sample 1
        #expect(closed.allSatisfy { Self.ids($0) == [1] })
        w.advanceWatermark(to: 10_000_000_000 + 60_000)
        #expect(w.closeReady().count == 60)
    }

    @Test("state stays bounded: panes never exceed size/pane + 1 however long the stream")
    func boundedState() {
        struct Counter: WindowAggregate { var n = 0; mutating func merge(_ o: Counter) { n += o.n } }
        var w = EventTimeWindows<String, Counter>(name: "t", size: 3_600_000, slide: 60_000, grace: 60_000)
        var maxPanes = 0
        var emitted = 0
        for i in 0..<50_000 {
            w.ingest(eventTime: Int64(i) * 1_000) { $0["g", default: Counter()].n += 1 }
            emitted += w.closeReady().count
            maxPanes = max(maxPanes, w.paneCount)
        }
        #expect(maxPanes <= 62)   // 60 panes per window + the open pane + grace
        #expect(emitted == 50_000 / 60 - 1)
    }

    @Test("count windows: the last N samples, every slide")
    func countWindows() {
        var w = CountWindows<String, IDList>(name: "n", size: 6, slide: 2)
        var emitted: [[Int]] = []
        var seqs: [Int?] = []
        for i in 0..<11 {
            w.ingest(eventTime: Int64(100 + i)) { $0["g", default: IDList()].ids.append(i) }
            for c in w.closeReady() { emitted.append(Self.ids(c)); seqs.append(c.firstSequence) }
        }
        #expect(emitted == [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 7], [4, 5, 6, 7, 8, 9]])
        #expect(seqs == [0, 2, 4])
    }

    @Test("window set: merged window stats equal stats computed on exactly the window's samples")
    func windowStatsEqualDirect() throws {
        var rng = SeededRandom(seed: 8)
        let c = 4
        let config = DistillStatisticsConfig(classes: c, replicates: 16, windows: [
            .eventTime("w", size: 10_000, slide: 2_500, grace: 500),
        ], calibrationWindows: [.eventTime("cal", size: 10_000, slide: 10_000, grace: 500)])
        try config.validate()
        var set = DistillWindowSet(config: config)
        let key = DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old")
        var samples: [DistillSample] = []
        var windows: [DistillWindow] = []
        var calibration: [CalibrationWindow] = []
        for i in 0..<3000 {
            // Mostly increasing time with jitter up to 400 ms (all within grace).
            let ts = Int64(i * 10) + Int64(rng.int(400))
            let s = randomSample(id: i, ts: ts, classes: c, rng: &rng)
            samples.append(s)
            #expect(set.ingest(s, groups: [key]) == 0)
            let e = set.closeReady()
            windows += e.statistics
            calibration += e.calibration
        }
        #expect(windows.count >= 8)
        for w in windows {
            var direct = DistillPaneStats(classes: c, replicates: 16)
            for s in samples where s.timestamp >= w.start && s.timestamp < w.end {
                direct.add(s, key: key, weights: BootstrapWeights(replicates: 16, id: s.id))
            }
            let merged = try #require(w.groups[key])
            for i in direct.sums.values.indices {
                #expect(merged.sums.values[i].isApproximatelyEqual(to: direct.sums.values[i], absoluteTolerance: 1e-9))
            }
        }
        #expect(!calibration.isEmpty)
        #expect(Set(calibration[0].groups.keys) == [CalibrationKey(version: "t-old", role: .teacher),
                                                  CalibrationKey(version: "t-new", role: .teacher),
                                                  CalibrationKey(version: "s1", role: .student)])
    }

    @Test("leaf groups fanned out at close equal ingesting every sample into each of its standard groups")
    func leafFanOutEqualsDirectGroups() throws {
        var rng = SeededRandom(seed: 21)
        let c = 4
        let config = DistillStatisticsConfig(classes: c, replicates: 16, windows: [
            .eventTime("w", size: 10_000, slide: 2_500, grace: 500),
        ])
        var leaves = DistillWindowSet(config: config)
        var direct = DistillWindowSet(config: config)
        var fromLeaves: [DistillWindow] = []
        var fromDirect: [DistillWindow] = []
        // Students and slices, each sometimes absent: a sample without one belongs to no per-student (per-slice) group.
        let students: [String?] = ["s1", "s2", nil]
        let slices: [String?] = ["a", "b", "c", nil]
        for i in 0..<4000 {
            let ts = Int64(i * 10) + Int64(rng.int(400))
            let student = students[rng.int(students.count)]
            let s = randomSample(id: i, ts: ts, classes: c, rng: &rng, student: student,
                                 slice: slices[rng.int(slices.count)])
            let leaf = DistillGroupKey.leaf(newTeacher: "t-new", oldTeacher: "t-old", pairedTeacher: nil,
                                            student: s.studentVersion, slice: s.slice)
            let standard = DistillGroupKey.standardGroups(newTeacher: "t-new", oldTeacher: "t-old", pairedTeacher: nil,
                                                          student: s.studentVersion, slice: s.slice)
            #expect(Set(leaf.fanOut) == Set(standard))
            leaves.ingest(s, groups: [leaf], partition: Int32(i % 3))
            direct.ingest(s, groups: standard, partition: Int32(i % 3))
            fromLeaves += leaves.closeReady().statistics.map { $0.expandingLeaves() }
            fromDirect += direct.closeReady().statistics
        }
        #expect(fromLeaves.count >= 10 && fromLeaves.count == fromDirect.count)
        var compared = 0
        for (a, b) in zip(fromLeaves, fromDirect) {
            #expect(a.end == b.end && a.samples == b.samples)
            #expect(Set(a.groups.keys) == Set(b.groups.keys), "the same groups, none a leaf")
            #expect(a.groups.keys.allSatisfy { !$0.isLeaf })
            for (key, expected) in b.groups {
                let got = try #require(a.groups[key])
                for j in expected.sums.values.indices {
                    // Counts are integers and add exactly; real sums differ only by summation order.
                    #expect(got.sums.values[j].isApproximatelyEqual(to: expected.sums.values[j],
                                                                     absoluteTolerance: 1e-9),
                            "\(key) column-row \(j)")
                }
                compared += 1
            }
        }
        // Pooled, 2 students, 3 slices and up to 6 student-slice pairs per window.
        #expect(compared >= fromLeaves.count * 10)
    }

    @Test("a window holding both leaves and a non-leaf entry under one of their groups adds them up")
    func leafFanOutAddsExistingEntries() throws {
        var rng = SeededRandom(seed: 5)
        let pooled = DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old")
        let leaf = DistillGroupKey.leaf(newTeacher: "t-new", oldTeacher: "t-old", pairedTeacher: nil, student: "s1",
                                        slice: nil)
        var a = DistillPaneStats(classes: 3, replicates: 4), b = DistillPaneStats(classes: 3, replicates: 4)
        let x = randomSample(id: 1, ts: 0, classes: 3, rng: &rng), y = randomSample(id: 2, ts: 0, classes: 3, rng: &rng)
        a.add(x, key: pooled, weights: BootstrapWeights(replicates: 4, id: x.id))
        b.add(y, key: leaf, weights: BootstrapWeights(replicates: 4, id: y.id))
        let window = DistillWindow(name: "w", start: 0, end: 1, samples: 2, lateSamples: 0, firstSequence: nil,
                                   groups: [pooled: a, leaf: b]).expandingLeaves()
        var both = a
        both.merge(b)
        #expect(window.groups[pooled] == both)
        #expect(window.groups[DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old", student: "s1")] == b)
        #expect(window.groups.count == 2)
    }

    @Test("checkpoint round trip: a set restored from JSON continues identically")
    func checkpointRoundTrip() throws {
        var rng = SeededRandom(seed: 4)
        let config = DistillStatisticsConfig(classes: 3, replicates: 8, windows: [
            .eventTime("w", size: 4_000, slide: 1_000, grace: 0), .count("n", size: 200, slide: 100),
        ], calibrationWindows: [])
        var a = DistillWindowSet(config: config)
        let key = DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old", slice: "x")
        let samples = (0..<1200).map { randomSample(id: $0, ts: Int64($0 * 7), classes: 3, rng: &rng, slice: "x") }
        for s in samples[..<600] { a.ingest(s, groups: [key]) }
        _ = a.closeReady()
        var b = try JSONDecoder().decode(DistillWindowSet.self, from: JSONEncoder().encode(a))
        var outA: [DistillWindow] = [], outB: [DistillWindow] = []
        for s in samples[600...] {
            a.ingest(s, groups: [key]); b.ingest(s, groups: [key])
            outA += a.closeReady().statistics; outB += b.closeReady().statistics
        }
        #expect(outA.count == outB.count && outA.count > 5)
        for (x, y) in zip(outA, outB) {
            #expect(x.name == y.name && x.start == y.start && x.end == y.end && x.samples == y.samples)
            #expect(x.groups == y.groups)
        }
    }

    @Test("checkpoint decoding rejects mis-shaped aggregates")
    func corruptCheckpoint() throws {
        let good = try JSONEncoder().encode(DistillPaneStats(classes: 3, replicates: 4))
        #expect(throws: Never.self) { try JSONDecoder().decode(DistillPaneStats.self, from: good) }
        var text = String(decoding: good, as: UTF8.self)
        text = text.replacingOccurrences(of: "\"classes\":3", with: "\"classes\":4")
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(DistillPaneStats.self, from: Data(text.utf8)) }
        // Three packed doubles where the shape needs 2 × (1 + 1) = 4.
        let three = [1.0, 2.0, 3.0].withUnsafeBytes { Data($0).base64EncodedString() }
        let sums = #"{"width":2,"replicates":1,"values":""# + three + #""}"#
        let four = [1.0, 2.0, 3.0, 4.0].withUnsafeBytes { Data($0).base64EncodedString() }
        let good4 = #"{"width":2,"replicates":1,"values":""# + four + #""}"#
        #expect(try JSONDecoder().decode(ReplicatedSums.self, from: Data(good4.utf8)).values == [1, 2, 3, 4])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(ReplicatedSums.self, from: Data(sums.utf8)) }
        let cal = try JSONEncoder().encode(CalibrationStats(classes: 3, replicates: 2))
        #expect(throws: Never.self) { try JSONDecoder().decode(CalibrationStats.self, from: cal) }
    }

    @Test("config validation names the setting")
    func validation() {
        #expect(throws: DistillConfigError.self) { try WindowSpec.eventTime("x", size: 10, slide: 0).validate() }
        #expect(throws: DistillConfigError.self) { try WindowSpec.count("x", size: 10, slide: 3).validate() }
        do {
            try DistillStatisticsConfig(classes: 3, windows: [.fast, .fast]).validate()
            Issue.record("duplicate window names accepted")
        } catch {
            #expect(error.setting == "windows.fast")
        }
    }
}

@Suite("Partition partials")
struct PartitionMergeTests {
    @Test("per-partition window partials merge to the single-stream window")
    func partitionsMerge() throws {
        var rng = SeededRandom(seed: 31)
        let config = DistillStatisticsConfig(classes: 3, replicates: 16, windows: [
            .eventTime("w", size: 2_000, slide: 1_000, grace: 0),
        ], calibrationWindows: [])
        let key = DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old")
        var whole = DistillWindowSet(config: config)
        var parts = [DistillWindowSet](repeating: DistillWindowSet(config: config), count: 2)
        for i in 0..<2000 {
            let s = randomSample(id: i, ts: Int64(i * 3), classes: 3, rng: &rng)
            whole.ingest(s, groups: [key])
            parts[i % 2].ingest(s, groups: [key])
        }
        whole.advanceWatermark(to: 10_000)
        parts[0].advanceWatermark(to: 10_000)
        parts[1].advanceWatermark(to: 10_000)
        let w = whole.closeReady().statistics
        let a = parts[0].closeReady().statistics, b = parts[1].closeReady().statistics
        #expect(w.count == a.count && a.count == b.count && w.count == 7)
        for i in w.indices {
            var m = a[i]
            m.merge(b[i])
            #expect(m.samples == w[i].samples)
            let x = try #require(m.groups[key]), y = try #require(w[i].groups[key])
            for j in x.sums.values.indices {
                #expect(x.sums.values[j].isApproximatelyEqual(to: y.sums.values[j], absoluteTolerance: 1e-9))
            }
            #expect(x.figures().teacherKL!.lower.isApproximatelyEqual(to: y.figures().teacherKL!.lower,
                                                                      absoluteTolerance: 1e-12))
        }
    }

    @Test("panes kept per partition: figures are bit-identical whatever the interleaving, and equal one stream's")
    func interleavingInvariant() throws {
        var rng = SeededRandom(seed: 77)
        let config = DistillStatisticsConfig(classes: 4, replicates: 16, windows: [
            .eventTime("w", size: 6_000, slide: 2_000, grace: 200),
        ], calibrationWindows: [.eventTime("cal", size: 6_000, slide: 6_000, grace: 200)])
        let key = DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old")
        // Three partitions, each in event-time order, at different rates.
        var streams: [[DistillSample]] = [[], [], []]
        var id = 0
        for p in 0..<3 {
            for i in 0..<(600 + 300 * p) {
                let ts = Int64(i * (40 - 10 * p))
                streams[p].append(randomSample(id: id, ts: ts, classes: 4, rng: &rng, labelProbability: 1))
                id += 1
            }
        }
        /// Feeds the partitions in batches of `batch` per partition, with the watermark at the slowest partition.
        func run(batch: Int) -> (windows: [DistillWindow], calibration: [CalibrationWindow], maxOpen: Int,
                                 maxSkew: Int64) {
            var set = DistillWindowSet(config: config)
            set.followInputWatermark()
            var next = [0, 0, 0]
            var reached: [Int64?] = [nil, nil, nil]
            var out: ([DistillWindow], [CalibrationWindow], Int) = ([], [], 0)
            var maxSkew: Int64 = 0
            while next.indices.contains(where: { next[$0] < streams[$0].count }) {
                for p in 0..<3 where next[p] < streams[p].count {
                    for s in streams[p][next[p]..<min(next[p] + batch, streams[p].count)] {
                        #expect(set.ingest(s, groups: [key], partition: Int32(p)) == 0, "nothing late")
                        reached[p] = s.timestamp
                    }
                    next[p] = min(next[p] + batch, streams[p].count)
                    // The slowest partition still sending holds event time back (as the daemon does).
                    let pending = (0..<3).filter { next[$0] < streams[$0].count }
                    if pending.allSatisfy({ reached[$0] != nil }) {
                        let low = pending.isEmpty ? reached.compactMap { $0 }.max()! : pending.map { reached[$0]! }.min()!
                        set.setInputWatermark(low)
                        maxSkew = max(maxSkew, reached.compactMap { $0 }.max()! - low)
                    }
                    let e = set.closeReady()
                    out.0 += e.statistics
                    out.1 += e.calibration
                    out.2 = max(out.2, set.openPaneCount)
                }
            }
            set.advanceWatermark(to: 1_000_000)
            let e = set.closeReady()
            return (out.0 + e.statistics, out.1 + e.calibration, out.2, maxSkew)
        }
        let a = run(batch: 1), b = run(batch: 97)
        #expect(a.windows.count == b.windows.count && a.windows.count > 10)
        for (x, y) in zip(a.windows, b.windows) {
            #expect(x.start == y.start && x.end == y.end && x.samples == y.samples)
            #expect(x.groups == y.groups, "bit-identical whatever the interleaving")
        }
        #expect(a.calibration.count == b.calibration.count && !a.calibration.isEmpty)
        for (x, y) in zip(a.calibration, b.calibration) { #expect(x.groups == y.groups) }
        // Open panes depend on grace and on how far partitions run ahead of the slowest, not on the window size
        // or the stream's length: per partition, (skew + grace) / pane + 2 for each window.
        for r in [a, b] {
            let bound = 3 * ([2_000, 6_000] as [Int64]).map { Int((r.maxSkew + 200) / $0) + 2 }.reduce(0, +)
            print("figure: open panes max \(r.maxOpen), partition skew \(r.maxSkew) ms, bound \(bound)")
            #expect(r.maxOpen <= bound)
        }

        // One stream of the same samples in time order gives the same windows, up to summation order.
        var one = DistillWindowSet(config: config)
        for s in streams.flatMap({ $0 }).sorted(by: { ($0.timestamp, $0.id) < ($1.timestamp, $1.id) }) {
            one.ingest(s, groups: [key])
        }
        one.advanceWatermark(to: 1_000_000)
        let reference = one.closeReady().statistics
        #expect(reference.count == a.windows.count)
        for (x, y) in zip(a.windows, reference) {
            #expect(x.start == y.start && x.samples == y.samples)
            let p = try #require(x.groups[key]), q = try #require(y.groups[key])
            for j in p.sums.values.indices {
                #expect(p.sums.values[j].isApproximatelyEqual(to: q.sums.values[j], absoluteTolerance: 1e-9))
            }
        }
    }

    @Test("sealed partials handed to another instance's windows reproduce the windows exactly")
    func sealedPartialsSeam() {
        typealias W = EventTimeWindows<String, IDList>
        var stage1 = W(name: "t", size: 10, slide: 5, grace: 2)
        var stage2 = W(name: "t", size: 10, slide: 5, grace: 2)
        var reference = W(name: "t", size: 10, slide: 5, grace: 2)
        var fromStage2: [[Int]] = [], fromReference: [[Int]] = []
        var partials = 0
        for i in 0..<200 {
            let ts = Int64(i / 2 + (i % 3)), partition = Int32(i % 4)
            stage1.ingest(eventTime: ts, partition: partition) { $0["g", default: IDList()].ids.append(i) }
            reference.ingest(eventTime: ts) { $0["g", default: IDList()].ids.append(i) }
            for p in stage1.sealPanes() {
                #expect(p.window == "t" && (p.pane + 1) * 5 <= stage1.watermark!)
                stage2.mergeSealed(p)
                partials += 1
            }
            stage2.advanceWatermark(to: stage1.watermark!)
            fromStage2 += stage2.closeReady().map { ($0.groups["g"]?.ids ?? []).sorted() }
            fromReference += reference.closeReady().map { ($0.groups["g"]?.ids ?? []).sorted() }
        }
        #expect(fromStage2 == fromReference && fromReference.count > 15)
        #expect(partials > fromReference.count, "one partial per partition and pane")
    }

    @Test("reshaping keeps panes when the pane size stays, and never emits a window over dropped panes")
    func reshape() throws {
        typealias W = EventTimeWindows<String, IDList>
        func add(_ w: inout W, _ ts: Int) { w.ingest(eventTime: Int64(ts)) { $0["g", default: IDList()].ids.append(ts) } }
        func spans(_ c: [ClosedWindow<String, IDList>]) -> [[Int64]] { c.map { [$0.start, $0.end] } }
        var w = W(name: "t", size: 10, slide: 5, grace: 0)
        for ts in [1, 4, 6, 12] { add(&w, ts) }
        #expect(spans(w.closeReady()) == [[-5, 5], [0, 10]])

        // Growing: windows reaching before the kept panes ([5, ...)) are skipped.
        var grown = try #require(w.reshaped(to: .eventTime("t", size: 20, slide: 5)))
        for ts in [14, 17, 22] { add(&grown, ts) }
        grown.advanceWatermark(to: 100)
        let g = grown.closeReady()
        #expect(spans(g) == [[5, 25], [10, 30], [15, 35], [20, 40]])
        #expect(g.map { ($0.groups["g"]?.ids ?? []).sorted() } == [[6, 12, 14, 17, 22], [12, 14, 17, 22], [17, 22], [22]])

        // Shrinking keeps going at once, with the panes from before the reload.
        var shrunk = try #require(w.reshaped(to: .eventTime("t", size: 5, slide: 5)))
        for ts in [14, 17, 22] { add(&shrunk, ts) }
        shrunk.advanceWatermark(to: 100)
        let s = shrunk.closeReady()
        #expect(spans(s) == [[10, 15], [15, 20], [20, 25]])
        #expect(s.map { ($0.groups["g"]?.ids ?? []).sorted() } == [[12, 14], [17], [22]])

        // Another pane size cannot keep the panes.
        #expect(w.reshaped(to: .eventTime("t", size: 10, slide: 2)) == nil)
    }

    @Test("a window set reshapes only window bounds; other statistics changes name the setting")
    func setReshapeRefusals() throws {
        let config = DistillStatisticsConfig(classes: 3, replicates: 8, windows: [
            .eventTime("fast", size: 60_000, slide: 10_000), .count("n", size: 100, slide: 50),
        ])
        let set = DistillWindowSet(config: config)
        var ok = config
        ok.windows[0] = .eventTime("fast", size: 30_000, slide: 10_000, grace: 5_000)
        #expect(try set.reshaped(to: ok).config == ok)
        func setting(_ change: (inout DistillStatisticsConfig) -> Void) -> String? {
            var c = config
            change(&c)
            do { _ = try set.reshaped(to: c); return nil } catch { return error.setting }
        }
        #expect(setting { $0.windows[0] = .eventTime("fast", size: 60_000, slide: 15_000) } == "windows.fast")
        #expect(setting { $0.windows.append(.drift) } == "windows")
        #expect(setting { $0.windows[1] = .count("n", size: 200, slide: 50) } == "windows.n")
        #expect(setting { $0.replicates = 16 } == "statistics")
        #expect(setting { $0.calibrationWindows[0] = .eventTime("calibration", size: 3_600_000, slide: 3_600_000) }
                == "calibration.window")
    }
}
