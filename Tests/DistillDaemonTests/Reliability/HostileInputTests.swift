import DistillCore
import DistillDaemon
import Foundation
import Testing

/// Poison, mutated, duplicated, reordered and late input through the engine: exact dead-letter counts, no crash,
/// finite weights, and the clean stream's alerts.
@Suite("Hostile input")
struct HostileInputTests {
    /// The rotation scenario with features, so the online student trains and its weights can be checked.
    static let config = scenarioConfig.replacingOccurrences(of: "model: {classes: [a, b, c, d]}",
                                                            with: "model: {classes: [a, b, c, d], features: 4}")

    static func records(count: Int) -> [[UInt8]] {
        let perSecond = 10
        let scenario = RotationScenario(seconds: count / perSecond, perSecond: perSecond,
                                        changeAt: Int64(count / perSecond) * 500)
        return scenario.records().map { bytes in
            // Features: the first teacher's logits, which the student can learn to reproduce.
            var text = String(decoding: bytes, as: UTF8.self)
            let logits = text.split(separator: "\"logits\":")[1].prefix { $0 != "]" } + "]"
            text.removeLast()
            return Array((text + ",\"features\":\(logits)}").utf8)
        }
    }

    static func alertIDs(_ outputs: [EngineOutput]) -> Set<String> {
        Set(outputs.compactMap { if case .decision(let d) = $0 { AlertEvent.id(for: d) } else { nil } })
    }

    enum Mutation: CaseIterable {
        case truncated, bitFlip, wrongType, hugeArray, deepNesting, invalidUTF8, nan
    }

    /// A copy of `bytes` that is certainly invalid, made with `kind`.
    static func mutate(_ bytes: [UInt8], _ kind: Mutation, rng: inout SplitMix) -> [UInt8] {
        func random(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        switch kind {
        case .truncated:
            return Array(bytes[..<(1 + random(bytes.count - 2))])
        case .bitFlip:
            // Flipping the low bit of a structural character always breaks the structure: { } [ ] : , " become
            // z | Z \ ; - #.
            let structural = bytes.indices.filter { Array("{}[]:,\"".utf8).contains(bytes[$0]) }
            var out = bytes
            out[structural[random(structural.count)]] ^= 0x01
            return out
        case .wrongType:
            let text = String(decoding: bytes, as: UTF8.self)
            return Array(text.replacingOccurrences(of: "\"ts\":", with: "\"ts\":\"").replacingOccurrences(
                of: ",\"teachers\"", with: "\",\"teachers\"").utf8)
        case .hugeArray:
            let huge = "[" + Array(repeating: "0.5", count: 200_000).joined(separator: ",") + "]"
            let text = String(decoding: bytes, as: UTF8.self)
            let range = text.range(of: "\"features\":")!
            return Array((text[..<range.upperBound] + huge + "}").utf8)
        case .deepNesting:
            let depth = 100_000
            return Array("{\"id\":\"deep\",\"ts\":1,\"teachers\":".utf8) + Array(repeating: UInt8(ascii: "["), count: depth)
                + Array(repeating: UInt8(ascii: "]"), count: depth) + Array("}".utf8)
        case .invalidUTF8:
            var out = bytes
            let id = bytes.firstIndex(of: UInt8(ascii: "r"))!  // "req-…" inside the id string
            out.insert(contentsOf: [0xC3, 0x28, 0xFF], at: id)
            return out
        case .nan:
            let text = String(decoding: bytes, as: UTF8.self)
            let range = text.range(of: "\"logits\":[")!
            return Array((text[..<range.upperBound] + "NaN," + text[range.upperBound...]).utf8)
        }
    }

    @Test("10% mutated records (7 kinds): dead letters equal the bad count, no crash, finite weights, same alerts")
    func mutatedInput() throws {
        let count = ReliabilityScale.isLong ? 100_000 : 10_000
        let config = try DistillConfig.parse(Self.config)
        let clean = Self.records(count: count)
        let reference = try DistillEngine(config: config)
        let expected = Self.alertIDs(DistillEngineTests.run(clean, engine: reference))

        var rng = SplitMix(seed: 8)
        var stream: [[UInt8]] = []
        var bad = 0
        var byKind: [String: Int] = [:]
        for (i, bytes) in clean.enumerated() {
            stream.append(bytes)
            if i % 10 == 5 {
                let kind = Mutation.allCases[Int(rng.next() % UInt64(Mutation.allCases.count))]
                stream.append(Self.mutate(bytes, kind, rng: &rng))
                bad += 1
                byKind["\(kind)", default: 0] += 1
            }
        }
        let engine = try DistillEngine(config: config)
        let outputs = DistillEngineTests.run(stream, engine: engine)
        let deadLetters = outputs.filter { if case .deadLetter = $0 { true } else { false } }.count
        let weights = try #require(engine.studentWeights)
        let finite = (weights.trained + weights.ema).allSatisfy(\.isFinite)
        let ids = Self.alertIDs(outputs)
        print("figure: hostile records=\(stream.count) bad=\(bad) dead_letters=\(deadLetters) crashes=0 "
              + "weights_finite=\(finite) alerts=\(ids.count) expected=\(expected.count) kinds=\(byKind.sorted { $0.key < $1.key })")
        #expect(deadLetters == bad)
        #expect(engine.counters.deadLetters.values.reduce(0, +) == bad)
        #expect(engine.counters.samplesIngested == clean.count)
        #expect(finite)
        #expect(reference.counters.studentUpdates == engine.counters.studentUpdates)
        #expect(!expected.isEmpty && ids == expected)
    }

    @Test("Duplicates by id are ignored, reordering within grace changes nothing, late samples are counted and dropped")
    func duplicatesReorderingLateness() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let clean = RotationScenario().records()
        let reference = try DistillEngine(config: config)
        let referenceOutputs = DistillEngineTests.run(clean, engine: reference)
        let expected = Self.alertIDs(referenceOutputs)

        var rng = SplitMix(seed: 12)
        // Reorder within blocks of 5 samples (400 ms at 10/s, inside the 1 s grace); re-send 5% of the samples a
        // little later; every 500 samples, a new sample stamped 10 minutes in the past (far beyond the grace).
        var stream: [[UInt8]] = []
        var duplicates = 0, late = 0
        for block in stride(from: 0, to: clean.count, by: 5) {
            var part = Array(clean[block..<min(block + 5, clean.count)])
            for i in part.indices.reversed() { part.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            stream += part
            if rng.uniform() < 0.25 { stream.append(part[0]); duplicates += 1 }
            if block % 500 == 0 && block > 0 {
                let ts = RotationScenario().start + Int64(block) * 100 - 600_000
                stream.append(Array("""
                    {"id":"late-\(block)","ts":\(ts),"teachers":[{"version":"v1","logits":[9,0,0,0]},\
                    {"version":"v2","logits":[0,9,0,0]}],"label":3}
                    """.utf8))
                late += 1
            }
        }
        let engine = try DistillEngine(config: config)
        let outputs = DistillEngineTests.run(stream, engine: engine)
        let ids = Self.alertIDs(outputs)
        print("figure: reordered records=\(stream.count) duplicates=\(duplicates) ignored=\(engine.counters.duplicateSamples) "
              + "late=\(late) counted_late=\(engine.counters.lateSamples) alerts=\(ids.count) expected=\(expected.count)")
        #expect(engine.counters.duplicateSamples == duplicates)
        #expect(engine.counters.lateSamples == late)
        #expect(!expected.isEmpty && ids == expected)
        // Same windows, same sample counts; figures equal up to summation order within a pane.
        let got = DistillEngineWatermarkTests.closedWindows(outputs)
        let want = DistillEngineWatermarkTests.closedWindows(referenceOutputs)
        #expect(got.map { "\($0.name)/\($0.end)/\($0.samples)" } == want.map { "\($0.name)/\($0.end)/\($0.samples)" })
        for (x, y) in zip(got, want) {
            for (key, stats) in x.groups {
                let ref = try #require(y.groups[key])
                for j in stats.sums.values.indices {
                    #expect(abs(stats.sums.values[j] - ref.sums.values[j]) <= 1e-9 * max(1, abs(ref.sums.values[j])))
                }
            }
        }
    }
}
