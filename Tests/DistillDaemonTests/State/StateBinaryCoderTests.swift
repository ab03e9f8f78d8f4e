import DistillCore
import Foundation
import Testing

@testable import DistillDaemon

/// The binary form of the engine state: every value comes back exactly (checked against JSON, a second encoder),
/// and damaged bytes throw instead of trapping.
@Suite("StateBinary coder")
struct StateBinaryCoderTests {
    enum Shape: Codable, Equatable {
        case point
        case window(sizeMillis: Int64, slide: Int64?)
        case named(String)
    }

    struct Edge: Codable, Equatable {
        var ints: [Int64] = [.min, -1, 0, 1, .max]
        var unsigned: [UInt64] = [0, 127, 128, .max]
        var small: [Int8] = [.min, .max]
        var halfs: [UInt16] = [0, .max]
        var floats: [Float] = [-0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, .infinity, -.infinity]
        var doubles: [Double] = [-0.0, .leastNonzeroMagnitude, 1e-310, .pi, -.infinity]
        var text = ["", "ascii", "ünïcödé ✓", "line\nbreak\u{0}nul"]
        var optional: String? = nil
        var present: Int? = 42
        var nested: [[Int]] = [[], [1], [2, 3]]
        var byName: [String: Double] = ["a": 1.5, "": -2]
        var byNumber: [Int32: String] = [3: "three", -1: "minus one"]
        var byInt: [Int: Bool] = [7: true, -7: false]
        var shapes: [Shape] = [.point, .window(sizeMillis: 60_000, slide: nil), .window(sizeMillis: 1, slide: 2),
                               .named("x")]
        var blob = Data([0, 1, 2, 255])
        var empty = Data()
        var flag = true
    }

    @Test("Edge values round-trip bit for bit")
    func edges() throws {
        let value = Edge()
        let bytes = try StateBinaryEncoder().encode(value)
        let back = try StateBinaryDecoder().decode(Edge.self, from: bytes)
        #expect(back == value)
        // Equality treats -0 and 0 alike: compare the bits too.
        #expect(back.floats.map(\.bitPattern) == value.floats.map(\.bitPattern))
        #expect(back.doubles.map(\.bitPattern) == value.doubles.map(\.bitPattern))
        // NaN payloads survive (JSON could not carry them at all).
        let nan = Float(bitPattern: 0x7FC0_1234)
        let nans = try StateBinaryDecoder().decode([Float].self, from: StateBinaryEncoder().encode([nan, -nan]))
        #expect(nans.map(\.bitPattern) == [nan.bitPattern, (-nan).bitPattern])
    }

    @Test("An integer that does not fit the type read is refused")
    func narrowing() throws {
        let bytes = try StateBinaryEncoder().encode([Int64(300)])
        #expect(throws: DecodingError.self) { try StateBinaryDecoder().decode([Int8].self, from: bytes) }
        let negative = try StateBinaryEncoder().encode([-1])
        #expect(throws: DecodingError.self) { try StateBinaryDecoder().decode([UInt].self, from: negative) }
    }

    /// A real engine state, after the rotation scenario with labels: windows, join buffer, episodes, ids; with
    /// `waiting` unlabeled samples besides, waiting in the label join (a larger state).
    static func engineState(waiting: Int = 0) throws -> DistillEngine.EngineState {
        try engine(waiting: waiting).state()
    }

    /// Records of the rotation scenario that `engine(waiting:)` plays: its first two thirds (the scenario is
    /// generated once here, not again for every batch of waiting samples).
    static let playedCount = RotationScenario().records().count * 2 / 3

    /// The engine whose state `engineState(waiting:)` is.
    static func engine(waiting: Int = 0) throws -> DistillEngine {
        let config = try DistillConfig.parse(scenarioConfig)
        let engine = try DistillEngine(config: config)
        let played = Array(RotationScenario().records().prefix(playedCount))
        _ = DistillEngineTests.run(played, engine: engine)
        addWaiting(waiting, to: engine, offset: played.count)
        return engine
    }

    /// Feeds `count` unlabeled samples, numbered from `first`, at the event time after the scenario's first two
    /// thirds: they wait in the label join (the oldest are evicted once it is full).
    static func addWaiting(_ count: Int, to engine: DistillEngine, offset: Int, first: Int = 0) {
        let ts = RotationScenario().start + Int64(playedCount) * 100
        for i in first..<first + count {
            let json = """
                {"id":"waiting-\(i)","ts":\(ts),"teachers":[{"version":"v1","logits":[0.5,\(i % 7),-1.25,2]},\
                {"version":"v2","logits":[1,0,\(i % 5),-0.5]}]}
                """
            _ = engine.handleSample(Array(json.utf8), key: nil,
                                    at: InputPosition(topic: "samples", partition: 0, offset: Int64(offset + i)))
        }
    }

    @Test("A real engine state decodes to the same value: its JSON before and after is identical")
    func engineStateRoundTrip() throws {
        let state = try Self.engineState()
        let json = JSONEncoder()
        json.outputFormatting = .sortedKeys
        let bytes = try StateBinaryEncoder().encode(state)
        let back = try StateBinaryDecoder().decode(DistillEngine.EngineState.self, from: bytes)
        let before = try json.encode(state), after = try json.encode(back)
        // Dictionaries with number keys encode as arrays in hash order, which differs between two instances of
        // the same dictionary, so an array may match as a multiset; everything else must match exactly.
        let a = try JSONSerialization.jsonObject(with: before), b = try JSONSerialization.jsonObject(with: after)
        #expect(Self.equivalent(a, b), "the decoded state differs from the encoded one")
        #expect(before.count > 10_000, "the scenario left real state behind")
        // Smaller than the JSON it replaces (no base64, no repeated quoting).
        #expect(bytes.count < before.count)
        print("figure: engine state JSON \(before.count) B, binary \(bytes.count) B")
    }

    /// A `LogitSample` as binary checkpoints held it until 2026-12-07: its packed arrays as base64 strings.
    struct Base64LogitSample: Encodable {
        let classes: Int, capacity: Int, hashes: String, labels: String, logits: String
    }

    @Test("Packed number arrays are raw bytes in the binary form, base64 in JSON; binary checkpoints' base64 strings of before still decode")
    func packedNumberArrays() throws {
        var sample = LogitSample(classes: 3, capacity: 10)
        for i in 0..<6 {
            let row: [Float] = [Float(i), -0.0, .leastNonzeroMagnitude]
            row.withUnsafeBufferPointer { sample.offer(hash: UInt64(100 - i * 7), logits: $0, label: i % 3) }
        }
        let bytes = try StateBinaryEncoder().encode(sample)
        #expect(try StateBinaryDecoder().decode(LogitSample.self, from: bytes) == sample)

        func base64<T>(_ values: [T]) -> String { values.withUnsafeBytes { Data($0).base64EncodedString() } }
        let old = Base64LogitSample(classes: 3, capacity: 10, hashes: base64(sample.hashes),
                                    labels: base64(sample.labels), logits: base64(sample.logits))
        let oldBytes = try StateBinaryEncoder().encode(old)
        let fromOld = try StateBinaryDecoder().decode(LogitSample.self, from: oldBytes)
        #expect(fromOld == sample)
        #expect(fromOld.logits.map(\.bitPattern) == sample.logits.map(\.bitPattern), "exact bits, -0 included")
        // 6 × 8 + 6 × 4 + 18 × 4 = 144 bytes of numbers: raw, or a third more as base64.
        #expect(oldBytes.count - bytes.count >= 144 / 3, "raw \(bytes.count) B, base64 \(oldBytes.count) B")

        let json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(sample)) as? [String: Any])
        #expect(json["hashes"] as? String == old.hashes && json["logits"] as? String == old.logits)
        #expect(try JSONDecoder().decode(LogitSample.self, from: JSONEncoder().encode(old)) == sample)
    }

    /// JSON values equal, except that arrays may differ in order.
    static func equivalent(_ a: Any, _ b: Any) -> Bool {
        switch (a, b) {
        case let (x as [String: Any], y as [String: Any]):
            return x.count == y.count && x.allSatisfy { key, value in y[key].map { equivalent(value, $0) } ?? false }
        case let (x as [Any], y as [Any]):
            return x.count == y.count
                && (zip(x, y).allSatisfy { equivalent($0, $1) } || x.map(canonical).sorted() == y.map(canonical).sorted())
        case let (x as NSNumber, y as NSNumber): return x == y
        case let (x as String, y as String): return x == y
        case (is NSNull, is NSNull): return true
        default: return false
        }
    }

    static func canonical(_ v: Any) -> String {
        switch v {
        case let d as [String: Any]: "{" + d.keys.sorted().map { "\($0):" + canonical(d[$0]!) }.joined(separator: ",") + "}"
        case let a as [Any]: "[" + a.map(canonical).joined(separator: ",") + "]"
        default: "\(v)"
        }
    }

    @Test("Every truncation and many byte flips of a real state throw or decode, never trap")
    func damage() throws {
        let bytes = try StateBinaryEncoder().encode(try Self.engineState())
        var thrown = 0, cuts = 0
        for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 400)) {
            cuts += 1
            do {
                _ = try StateBinaryDecoder().decode(DistillEngine.EngineState.self, from: Array(bytes[..<cut]))
            } catch { thrown += 1 }
        }
        #expect(thrown == cuts, "every truncation is detected")
        var rng = SplitMix(seed: 77)
        for _ in 0..<300 {
            var damaged = bytes
            let at = StateBinary.magic.count + Int(rng.next() % UInt64(bytes.count - StateBinary.magic.count))
            damaged[at] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            _ = try? StateBinaryDecoder().decode(DistillEngine.EngineState.self, from: damaged)
        }
    }

    @Test("A format 2 (JSON) engine state from the previous build is still restored")
    func readsFormat2() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let records = RotationScenario().records()
        let half = records.count / 2
        let first = try DistillEngine(config: config)
        _ = DistillEngineTests.run(Array(records[..<half]), engine: first)
        var old = first.state()
        old.formatVersion = 2
        let json = Array(try JSONEncoder().encode(old))
        let fromJSON = try DistillEngine(config: config)
        try fromJSON.restore(json)
        let fromBinary = try DistillEngine(config: config)
        try fromBinary.restore(first.snapshot())
        let rest = Array(records[half...])
        let a = DistillEngineTests.run(rest, engine: fromJSON), b = DistillEngineTests.run(rest, engine: fromBinary)
        #expect(windowReports(a) == windowReports(b) && !windowReports(a).isEmpty)
        // Any other JSON format is refused with the versions this build reads.
        old.formatVersion = 1
        let error = #expect(throws: EngineStateError.self) {
            try DistillEngine(config: config).restore(Array(try JSONEncoder().encode(old)))
        }
        #expect(error?.description.contains("format 1, this build reads 2 and 3") == true)
    }
}
