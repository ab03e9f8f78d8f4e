import DistillCore
import Foundation
import Testing

@testable import DistillDaemon

/// The label join buffer's checkpoint form: columns, and the field-by-field form of earlier checkpoints.
@Suite("Label join buffer")
struct LabelJoinBufferTests {
    /// Samples of every shape the buffer can hold: 1–3 teachers, with and without student, slice, features, label.
    static func samples(_ n: Int) -> [DistillSample] {
        var rng = SplitMix(seed: 11)
        return (0..<n).map { i in
            let c = 4
            let teachers = (0...(i % 3)).map { "t\($0 + i % 2)" }
            func logits(_ k: Int) -> [Float] { (0..<k).map { _ in Float(rng.normal()) } }
            let student: String? = i % 4 == 0 ? nil : "s\(i % 2)"
            return DistillSample(
                id: i % 5 == 0 ? "réq-\(i)\u{1F600}" : "req-\(i)", timestamp: 1_000 + Int64(i) * 7, classes: c,
                features: i % 3 == 0 ? logits(5) : [], teacherVersions: teachers,
                teacherLogits: logits(teachers.count * c), studentVersion: student,
                studentLogits: student == nil ? [] : logits(c), label: i % 6 == 0 ? i % c : nil,
                slice: i % 7 == 0 ? nil : "slice-\(i % 3)")
        }
    }

    static func filled(_ samples: [DistillSample]) -> LabelJoinBuffer {
        var buffer = LabelJoinBuffer(windowMillis: 10_000, capacity: 1_000)
        for (i, s) in samples.enumerated() { buffer.waitForLabel(s, partition: Int32(i % 4)) }
        buffer.waitForSample(LabelRecord(id: "early", label: 1, timestamp: 1_500))
        return buffer
    }

    /// The samples as the buffer keeps them (without features) and their partitions.
    static func expected(_ samples: [DistillSample]) -> [String: (DistillSample, Int32)] {
        var out: [String: (DistillSample, Int32)] = [:]
        for (i, s) in samples.enumerated() {
            var kept = s
            kept.features = []
            out[s.id] = (kept, Int32(i % 4))
        }
        return out
    }

    static func check(_ restored: LabelJoinBuffer, against samples: [DistillSample]) {
        var buffer = restored
        #expect(buffer.waitingSamples == samples.count && buffer.waitingLabels == 1)
        for (id, (sample, partition)) in expected(samples) {
            let taken = buffer.takeSample(for: id)
            #expect(taken?.sample == sample && taken?.partition == partition, "\(id)")
        }
        #expect(buffer.takeLabel(for: "early") == 1)
    }

    @Test("columns round-trip every sample shape through the binary checkpoint form and JSON")
    func roundTrip() throws {
        let samples = Self.samples(300)
        let buffer = Self.filled(samples)
        let binary = try StateBinaryDecoder().decode(LabelJoinBuffer.self,
                                                     from: try StateBinaryEncoder().encode(buffer))
        Self.check(binary, against: samples)
        let json = try JSONDecoder().decode(LabelJoinBuffer.self, from: try JSONEncoder().encode(buffer))
        Self.check(json, against: samples)
        // The arrival order survives too: expiring drops the oldest first.
        var restored = binary
        restored.expire(before: 1_000 + 100 * 7 + 10_000)
        #expect(restored.waitingSamples == 200 && restored.unlabeledExpired == 100)
        #expect(restored.takeSample(for: "req-99") == nil && restored.takeSample(for: "req-101") != nil)
        // The same buffer always encodes to the same bytes (ids in order, not in hash order).
        #expect(try StateBinaryEncoder().encode(buffer) == StateBinaryEncoder().encode(binary))
    }

    /// The buffer as checkpoints wrote it before columns: the synthesized form of its stored properties.
    struct FieldByField: Codable {
        var windowMillis: Int64, capacity: Int
        var samples: [String: WaitingSample], sampleOrder: [JoinEntry], sampleHead: Int
        var labels: [String: LabelRecord], labelOrder: [JoinEntry], labelHead: Int
        var tooLate: Int, unlabeledExpired: Int
    }

    @Test("a buffer written field by field, as earlier checkpoints did, is still read")
    func readsFieldByField() throws {
        let samples = Self.samples(50)
        var waiting: [String: WaitingSample] = [:]
        for (id, (sample, partition)) in Self.expected(samples) {
            waiting[id] = WaitingSample(sample: sample, partition: partition)
        }
        let old = FieldByField(
            windowMillis: 10_000, capacity: 1_000, samples: waiting,
            sampleOrder: samples.map { JoinEntry(id: $0.id, ts: $0.timestamp) }, sampleHead: 0,
            labels: ["early": LabelRecord(id: "early", label: 1, timestamp: 1_500)],
            labelOrder: [JoinEntry(id: "early", ts: 1_500)], labelHead: 0, tooLate: 0, unlabeledExpired: 0)
        Self.check(try StateBinaryDecoder().decode(LabelJoinBuffer.self, from: try StateBinaryEncoder().encode(old)),
                   against: samples)
        Self.check(try JSONDecoder().decode(LabelJoinBuffer.self, from: try JSONEncoder().encode(old)),
                   against: samples)
    }

    @Test("damaged columns are refused, never trapped on")
    func damagedColumns() throws {
        let samples = Self.samples(20)
        let json = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(Self.filled(samples)))
        var object = try #require(json as? [String: Any])
        var waiting = try #require(object["waiting"] as? [String: Any])
        // Teacher logits one Float short, then a string index out of range.
        let text = try #require(waiting["teacherLogits"] as? String)
        let logits = try #require(Data(base64Encoded: text))
        waiting["teacherLogits"] = logits.dropLast(4).base64EncodedString()
        object["waiting"] = waiting
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(LabelJoinBuffer.self, from: try JSONSerialization.data(withJSONObject: object))
        }
        waiting["teacherLogits"] = logits.base64EncodedString()
        waiting["strings"] = [String]()
        object["waiting"] = waiting
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(LabelJoinBuffer.self, from: try JSONSerialization.data(withJSONObject: object))
        }
    }
}
