import DistillCore
import Foundation
import Testing

// MARK: - Decode throughput (opt-in measurement, not a pass/fail test)

/// Run with `DISTILLD_BENCH=1 swift test -c release --filter DecodeThroughput`. Prints samples/s of
/// `SampleDecoder` and of Foundation's `JSONDecoder` on the same ~1.3 KB records (64 features, two teachers
/// and a student with 16 logits each), measured in the same run, and their ratio.
@Suite("Decode throughput", .enabled(if: ProcessInfo.processInfo.environment["DISTILLD_BENCH"] != nil))
struct DecodeThroughputTests {
    struct FoundationTeacher: Decodable { let version: String; let logits: [Float] }
    struct FoundationSample: Decodable {
        let id: String, ts: Int64, features: [Float]?, teachers: [FoundationTeacher]
        let student: FoundationTeacher?, label: Int?, slice: String?
    }

    static func records(count: Int) -> [[UInt8]] {
        var rng = SeededRandom(seed: 1)
        func numbers(_ n: Int, _ scale: Double) -> String {
            (0..<n).map { _ in String(format: "%.7g", (rng.uniform() * 2 - 1) * scale) }.joined(separator: ",")
        }
        return (0..<count).map { i in
            Array(("{\"id\":\"req-\(String(format: "%07d", i))\",\"ts\":\(1_795_434_123_456 + i),"
                + "\"features\":[\(numbers(64, 3))],\"teachers\":[{\"version\":\"distilbert-v7\",\"logits\":["
                + numbers(16, 8) + "]},{\"version\":\"distilbert-v8\",\"logits\":[" + numbers(16, 8) + "]}],"
                + "\"student\":{\"version\":\"tinybert-s12\",\"logits\":[" + numbers(16, 8) + "]},"
                + "\"label\":\(i % 16),\"slice\":\"canary-5\"}").utf8)
        }
    }

    static func rate(_ n: Int, rounds: Int, _ body: () throws -> Void) rethrows -> Double {
        var best = Double.infinity
        for _ in 0..<rounds {
            let clock = ContinuousClock()
            let elapsed = try clock.measure(body)
            best = min(best, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
        }
        return Double(n) / best
    }

    @Test("SampleDecoder vs JSONDecoder samples/s")
    func throughput() throws {
        let records = Self.records(count: 2000)
        let bytes = records.map(\.count).reduce(0, +) / records.count
        let decoder = SampleDecoder(classes: 16, features: 64)
        var sample = DistillSample(classes: 16)
        let ours = try Self.rate(records.count, rounds: 20) {
            for r in records { try decoder.decode(r, into: &sample) }
        }
        let datas = records.map { Data($0) }
        let json = JSONDecoder()
        let theirs = try Self.rate(records.count, rounds: 5) {
            for d in datas { _ = try json.decode(FoundationSample.self, from: d) }
        }
        print(String(format: "decode %d-byte sample: SampleDecoder %.0f/s, JSONDecoder %.0f/s, ratio %.1fx",
                     bytes, ours, theirs, ours / theirs))
        #expect(sample.teacherLogits.count == 32)
    }
}
