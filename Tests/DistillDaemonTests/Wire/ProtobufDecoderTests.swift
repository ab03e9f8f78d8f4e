import DistillCore
import DistillWire
import Foundation
import SwiftProtobuf
import Testing

// MARK: - JSON and protobuf decode to the same values

@Suite("Protobuf wire format")
struct ProtobufDecoderTests {
    /// Unknown fields 99 (varint 1) and 100 (bytes "abc"), which every decoder must skip.
    static let unknownProtobufFields: [UInt8] = [0x98, 0x06, 0x01, 0xA2, 0x06, 0x03, 0x61, 0x62, 0x63]

    @Test("2,000 random samples written as JSON and as protobuf decode to bit-identical values")
    func randomSamplesAreIdentical() throws {
        var random = RandomSamples(seed: 42)
        var checked = 0
        var edgeFloats = 0
        for round in 0..<2_000 {
            let classes = 2 + random.int(7)
            let features: Int? = random.chance(0.5) ? 1 + random.int(6) : nil
            let json = SampleDecoder(classes: classes, features: features)
            let protobuf = ProtobufSampleDecoder(classes: classes, features: features)
            let original = random.sample(classes: classes, features: features)
            let record = WireRecord(original)
            let withUnknown = round % 3 == 0
            let jsonBytes = record.json(extra: withUnknown ? #""extra":{"a":[1,null,"x"]}"# : nil)
            let protoBytes = record.protobuf() + (withUnknown ? Self.unknownProtobufFields : [])
            let fromJSON = try json.decode(jsonBytes)
            let fromProto = try protobuf.decode(protoBytes)
            #expect(bitwiseDifference(fromJSON, fromProto) == nil,
                    "round \(round): \(bitwiseDifference(fromJSON, fromProto) ?? "")")
            #expect(bitwiseDifference(original, fromProto) == nil,
                    "round \(round) round trip: \(bitwiseDifference(original, fromProto) ?? "")")
            // The encoder writes the same bytes as the message built field by field.
            #expect(ProtobufRecordEncoder.encode(original) == record.protobuf())
            // decode(into:) over a previous, different sample gives the same value.
            var reused = random.sample(classes: classes, features: features)
            try protobuf.decode(protoBytes, into: &reused)
            #expect(bitwiseDifference(reused, fromProto) == nil, "round \(round): decode(into:) kept stale data")
            let all = original.features + original.teacherLogits + original.studentLogits
            edgeFloats += all.filter { $0.isSubnormal || ($0 == 0 && $0.sign == .minus) }.count
            checked += 1
        }
        #expect(checked == 2_000)
        #expect(edgeFloats > 500, "the generator must produce subnormals and -0 (it made \(edgeFloats))")
    }

    @Test("Random label records decode to the same values in both formats")
    func labelsAreIdentical() throws {
        var random = RandomSamples(seed: 9)
        for _ in 0..<500 {
            let classes = 2 + random.int(10)
            let label = LabelRecord(id: random.string(maxLength: 30, allowEmpty: false), label: random.int(classes),
                                    timestamp: Int64(truncatingIfNeeded: random.rng.next() >> 1))
            let json = "{\"id\":\(jsonString(label.id)),\"label\":\(label.label),\"ts\":\(label.timestamp)}"
            let a = try SampleDecoder(classes: classes).decodeLabel(Array(json.utf8))
            let b = try ProtobufSampleDecoder(classes: classes).decodeLabel(ProtobufRecordEncoder.encode(label))
            #expect(a == b && b == label)
        }
    }

    @Test("The format-choosing RecordDecoder reads each format and rejects the other")
    func recordDecoder() throws {
        var random = RandomSamples(seed: 3)
        let sample = random.sample(classes: 4, features: 3)
        let json = RecordDecoder(format: .json, classes: 4, features: 3)
        let proto = RecordDecoder(format: .protobuf, classes: 4, features: 3)
        #expect(bitwiseDifference(try json.decode(WireRecord(sample).json()), sample) == nil)
        #expect(bitwiseDifference(try proto.decode(ProtobufRecordEncoder.encode(sample)), sample) == nil)
        #expect(throws: RecordError.self) { try json.decode(ProtobufRecordEncoder.encode(sample)) }
        let error = #expect(throws: RecordError.self) { try proto.decode(WireRecord(sample).json()) }
        #expect(error?.rule == .malformedProtobuf, "a JSON record on a protobuf topic: \(String(describing: error))")
    }
}

// MARK: - The same rules and reason codes

@Suite("Protobuf validation matches JSON")
struct ProtobufValidationTests {
    /// (what, the record with one fault, the field and rule both decoders must report) for C = `classes` and
    /// D = `features` (at least 3 and 2).
    static func faults(classes c: Int, features d: Int) -> [(String, WireRecord, String, RecordError.Rule)] {
        let ok = (0..<c).map { Float($0) + 0.5 }
        func logits(_ changes: [Int: Float] = [:], count: Int? = nil) -> [Float] {
            var v = Array((0..<(count ?? c)).map { Float($0) + 0.5 })
            for (k, x) in changes { v[k] = x }
            return v
        }
        func with(_ change: (inout WireRecord) -> Void) -> WireRecord {
            var r = WireRecord()
            r.teachers = [.init(version: "v", logits: ok)]
            change(&r)
            return r
        }
        let t = WireRecord.Prediction.self
        return [
            ("no id", with { $0.id = nil }, "id", .missing),
            ("empty id", with { $0.id = "" }, "id", .outOfRange),
            ("id of 257 bytes", with { $0.id = String(repeating: "x", count: 257) }, "id", .outOfRange),
            ("id of 129 two-byte characters", with { $0.id = String(repeating: "é", count: 129) }, "id", .outOfRange),
            ("no ts", with { $0.ts = nil }, "ts", .missing),
            ("negative ts", with { $0.ts = -5 }, "ts", .outOfRange),
            ("smallest ts", with { $0.ts = .min }, "ts", .outOfRange),
            ("no teachers", with { $0.teachers = nil }, "teachers", .missing),
            ("teacher without version", with { $0.teachers = [t.init(version: nil, logits: ok)] },
             "teachers[0].version", .missing),
            ("teacher with empty version", with { $0.teachers = [t.init(version: "", logits: ok)] },
             "teachers[0].version", .outOfRange),
            ("teacher without logits", with { $0.teachers = [t.init(version: "v", logits: nil)] },
             "teachers[0].logits", .missing),
            ("short teacher logits", with { $0.teachers = [t.init(version: "v", logits: ok),
                                                           t.init(version: "w", logits: logits(count: c - 1))] },
             "teachers[1].logits", .wrongLength),
            ("long teacher logits", with { $0.teachers = [t.init(version: "v", logits: logits(count: c + 1))] },
             "teachers[0].logits", .wrongLength),
            ("NaN teacher logit", with { $0.teachers = [t.init(version: "v", logits: logits([1: .nan]))] },
             "teachers[0].logits[1]", .notFinite),
            ("+Infinity teacher logit", with { $0.teachers = [t.init(version: "v", logits: ok),
                                                              t.init(version: "w", logits: logits([2: .infinity]))] },
             "teachers[1].logits[2]", .notFinite),
            ("-Infinity teacher logit", with { $0.teachers = [t.init(version: "v", logits: logits([0: -.infinity]))] },
             "teachers[0].logits[0]", .notFinite),
            ("duplicate teacher version", with { $0.teachers = [t.init(version: "v", logits: ok),
                                                                t.init(version: "v", logits: ok)] },
             "teachers[1].version", .duplicateKey),
            ("short features", with { $0.features = Array(repeating: 1, count: d - 1) }, "features", .wrongLength),
            ("long features", with { $0.features = Array(repeating: 1, count: d + 1) }, "features", .wrongLength),
            ("NaN feature", with { $0.features = [.nan] + Array(repeating: 1, count: d - 1) }, "features[0]",
             .notFinite),
            ("Infinity feature", with { $0.features = [1, .infinity] + Array(repeating: 1, count: d - 2) },
             "features[1]", .notFinite),
            ("student without version", with { $0.student = t.init(version: nil, logits: ok) },
             "student.version", .missing),
            ("student with empty version", with { $0.student = t.init(version: "", logits: ok) },
             "student.version", .outOfRange),
            ("student without logits", with { $0.student = t.init(version: "s", logits: nil) },
             "student.logits", .missing),
            ("short student logits", with { $0.student = t.init(version: "s", logits: [1]) },
             "student.logits", .wrongLength),
            ("NaN student logit", with { $0.student = t.init(version: "s", logits: logits([2: .nan])) },
             "student.logits[2]", .notFinite),
            ("label = C", with { $0.label = Int64(c) }, "label", .outOfRange),
            ("label -1", with { $0.label = -1 }, "label", .outOfRange),
            ("huge label", with { $0.label = .max }, "label", .outOfRange),
        ]
    }

    @Test("Each fault gives the same field and reason code in both formats")
    func sameReasonCodes() {
        let json = SampleDecoder(classes: 3, features: 2)
        let protobuf = ProtobufSampleDecoder(classes: 3, features: 2)
        let faults = Self.faults(classes: 3, features: 2)
        #expect(faults.count == 29)
        for (what, record, field, rule) in faults {
            let a = #expect(throws: RecordError.self, "JSON: \(what)") { try json.decode(record.json()) }
            let b = #expect(throws: RecordError.self, "protobuf: \(what)") { try protobuf.decode(record.protobuf()) }
            #expect(a?.rule == rule && a?.field == field, "JSON \(what): \(String(describing: a))")
            #expect(b?.rule == rule && b?.field == field, "protobuf \(what): \(String(describing: b))")
        }
        // The unchanged record is valid in both.
        #expect(throws: Never.self) { try json.decode(WireRecord().json()) }
        #expect(throws: Never.self) { try protobuf.decode(WireRecord().protobuf()) }
    }

    @Test("Label faults give the same field and reason code in both formats")
    func labelFaults() {
        struct Label { var id: String? = "r"; var label: Int64? = 1; var ts: Int64? = 5 }
        let cases: [(String, Label, String, RecordError.Rule)] = [
            ("no id", Label(id: nil), "id", .missing),
            ("empty id", Label(id: ""), "id", .outOfRange),
            ("no label", Label(label: nil), "label", .missing),
            ("label = C", Label(label: 3), "label", .outOfRange),
            ("negative label", Label(label: -2), "label", .outOfRange),
            ("no ts", Label(ts: nil), "ts", .missing),
            ("negative ts", Label(ts: -1), "ts", .outOfRange),
        ]
        for (what, l, field, rule) in cases {
            var parts: [String] = []
            if let id = l.id { parts.append("\"id\":\(jsonString(id))") }
            if let label = l.label { parts.append("\"label\":\(label)") }
            if let ts = l.ts { parts.append("\"ts\":\(ts)") }
            var m = Distill_V1_LabelRecord()
            if let id = l.id { m.id = id }
            if let label = l.label { m.label = label }
            if let ts = l.ts { m.ts = ts }
            let a = #expect(throws: RecordError.self) {
                try SampleDecoder(classes: 3).decodeLabel(Array(("{" + parts.joined(separator: ",") + "}").utf8))
            }
            let b = #expect(throws: RecordError.self) {
                try ProtobufSampleDecoder(classes: 3).decodeLabel(ProtobufRecordEncoder.serialize(m))
            }
            #expect(a?.rule == rule && a?.field == field, "JSON \(what): \(String(describing: a))")
            #expect(b?.rule == rule && b?.field == field, "protobuf \(what): \(String(describing: b))")
        }
    }

    @Test("Size limit and invalid UTF-8 give the JSON rule codes")
    func limitsAndUTF8() {
        let small = SampleDecoder.Limits(maxRecordBytes: 64)
        var big = WireRecord()
        big.slice = String(repeating: "s", count: 80)
        let a = #expect(throws: RecordError.self) {
            try SampleDecoder(classes: 3, limits: small).decode(big.json())
        }
        let b = #expect(throws: RecordError.self) {
            try ProtobufSampleDecoder(classes: 3, limits: small).decode(big.protobuf())
        }
        #expect(a?.rule == .tooLarge && b?.rule == .tooLarge && b?.field == "$")

        // slice (field 7) = C0 80, an overlong encoding; appended fields merge into the record.
        let bad: [UInt8] = [0x3A, 0x02, 0xC0, 0x80]
        let c = #expect(throws: RecordError.self) {
            try ProtobufSampleDecoder(classes: 3).decode(WireRecord().protobuf() + bad)
        }
        #expect(c?.rule == .invalidUTF8, "\(String(describing: c))")
        // The JSON decoder says the same about the same bytes in its slice.
        let json = Array(#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"slice":""#.utf8)
            + [0xC0, 0x80] + Array(#""}"#.utf8)
        let d = #expect(throws: RecordError.self) { try SampleDecoder(classes: 3).decode(json) }
        #expect(d?.rule == .invalidUTF8)
    }

    @Test("What protobuf cannot say: empty lists read as absent, repeated scalars merge")
    func documentedDifferences() throws {
        let protobuf = ProtobufSampleDecoder(classes: 3, features: 2)
        // An empty features list is absent: valid, no features.
        var r = WireRecord()
        r.features = []
        #expect(try protobuf.decode(r.protobuf()).features.isEmpty)
        // No teachers at all is `missing` (JSON's `"teachers": []` is `wrong_length`).
        r.teachers = []
        #expect(#expect(throws: RecordError.self) { try protobuf.decode(r.protobuf()) }?.rule == .missing)
        // A scalar sent twice: the last one wins, as protobuf specifies (id field 1 = "z").
        let twice = WireRecord().protobuf() + [0x0A, 0x01, 0x7A]
        #expect(try protobuf.decode(twice).id == "z")
    }

    @Test("Truncated, garbled and random bytes are dead-letter errors, never a crash")
    func truncatedAndGarbage() throws {
        var random = RandomSamples(seed: 77)
        let decoder = ProtobufSampleDecoder(classes: 4, features: 3)
        var malformed = 0
        var other: Set<RecordError.Rule> = []
        for _ in 0..<50 {
            let bytes = ProtobufRecordEncoder.encode(random.sample(classes: 4, features: 3))
            for cut in 0..<bytes.count {
                do {
                    _ = try decoder.decode(Array(bytes[..<cut]))
                } catch {
                    if error.rule == .malformedProtobuf { malformed += 1 } else { other.insert(error.rule) }
                }
            }
            // One byte flipped anywhere.
            for _ in 0..<20 {
                var flipped = bytes
                flipped[random.int(flipped.count)] ^= UInt8(1 << random.int(8))
                do { _ = try decoder.decode(flipped) } catch { other.insert(error.rule) }
            }
        }
        for _ in 0..<5_000 {
            let garbage = (0..<random.int(200)).map { _ in UInt8(truncatingIfNeeded: random.rng.next()) }
            do { _ = try decoder.decode(garbage) } catch { other.insert(error.rule) }
            do { _ = try decoder.decodeLabel(garbage) } catch { other.insert(error.rule) }
        }
        #expect(malformed > 1_000, "cuts inside a field are malformed_protobuf (\(malformed))")
        let allowed: Set<RecordError.Rule> = [.malformedProtobuf, .missing, .wrongLength, .notFinite, .outOfRange,
                                              .invalidUTF8, .duplicateKey, .tooDeep]
        #expect(other.isSubset(of: allowed), "\(other)")
        // Specific undecodable inputs.
        for bytes: [UInt8] in [[0xFF], [0x0A, 0x05, 0x61], [0x08], [0x00, 0x00], [0x22, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
                               [0x0F]] {
            let e = #expect(throws: RecordError.self) { try decoder.decode(bytes) }
            #expect(e?.rule == .malformedProtobuf && e?.field == "$", "\(bytes): \(String(describing: e))")
        }
    }
}
