import DistillCore
import Foundation
import Testing

// MARK: - Sample and label decoding

@Suite("SampleDecoder")
struct SampleDecoderTests {
    let decoder = SampleDecoder(classes: 3, features: 2)

    func decode(_ json: String) throws(RecordError) -> DistillSample {
        try decoder.decode(Array(json.utf8))
    }

    func error(_ json: String, decoder: SampleDecoder? = nil) -> RecordError? {
        do {
            _ = try (decoder ?? self.decoder).decode(Array(json.utf8))
            return nil
        } catch {
            return error
        }
    }

    static let valid = """
    {"id": "req-0001234", "ts": 1795434123456, "features": [0.12, -1.3],
     "teachers": [{"version": "distilbert-v7", "logits": [1, 2.5, -3e-2]},
                  {"version": "distilbert-v8", "logits": [0.1, 0.2, 0.3], "extra": {"a": [1, {"b": null}]}}],
     "student": {"version": "tinybert-s12", "logits": [-1, 0, 1]},
     "label": 2, "slice": "canary-5", "future": [true, false, null, "x\\"y\\u00e9\\ud83d\\ude00", -1.5e-7, {}]}
    """

    @Test("a valid record decodes every field, logits flat")
    func decodesValid() throws {
        let s = try decode(Self.valid)
        #expect(s.id == "req-0001234")
        #expect(s.timestamp == 1_795_434_123_456)
        #expect(s.features == [0.12, -1.3])
        #expect(s.teacherVersions == ["distilbert-v7", "distilbert-v8"])
        #expect(s.teacherLogits == [1, 2.5, -0.03, 0.1, 0.2, 0.3])
        #expect(s.teacherLogits(at: 1) == [0.1, 0.2, 0.3])
        #expect(s.studentVersion == "tinybert-s12")
        #expect(s.studentLogits == [-1, 0, 1])
        #expect(s.label == 2)
        #expect(s.slice == "canary-5")
    }

    @Test("optional fields may be absent or null; decode(into:) resets them")
    func optionalFields() throws {
        var s = try decode(Self.valid)
        try decoder.decode(Array(#"{"id":"x","ts":0,"teachers":[{"version":"v","logits":[1,2,3]}],"label":null}"#.utf8),
                           into: &s)
        #expect(s.id == "x")
        #expect(s.features.isEmpty && s.studentVersion == nil && s.studentLogits.isEmpty)
        #expect(s.label == nil && s.slice == nil)
        #expect(s.teacherLogits == [1, 2, 3])
    }

    @Test("escapes in strings decode, including surrogate pairs")
    func escapes() throws {
        let tail = #"","ts":1,"teachers":[{"version":"v","logits":[0,0,0]}]}"#
        let s = try decode(#"{"id":"a\"b\\c\/d\u00e9\ud83d\ude00\n"# + tail)
        #expect(s.id == "a\"b\\c/d\u{e9}\u{1F600}\n")
        let u = try decode("{\"id\":\"caf\u{e9}-\u{1F600}" + tail)
        #expect(u.id == "caf\u{e9}-\u{1F600}")
    }

    @Test("each broken rule is reported with the field and the rule", arguments: [
        (#"{"ts":5,"teachers":[{"version":"v","logits":[1,2,3]}]}"#, "id", RecordError.Rule.missing),
        (#"{"id":"r","teachers":[{"version":"v","logits":[1,2,3]}]}"#, "ts", .missing),
        (#"{"id":"r","ts":5}"#, "teachers", .missing),
        (#"{"id":"","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}]}"#, "id", .outOfRange),
        (#"{"id":7,"ts":5,"teachers":[{"version":"v","logits":[1,2,3]}]}"#, "id", .wrongType),
        (#"{"id":"r","ts":5.0,"teachers":[{"version":"v","logits":[1,2,3]}]}"#, "ts", .wrongType),
        (#"{"id":"r","ts":1e3,"teachers":[{"version":"v","logits":[1,2,3]}]}"#, "ts", .wrongType),
        (#"{"id":"r","ts":"5","teachers":[{"version":"v","logits":[1,2,3]}]}"#, "ts", .wrongType),
        (#"{"id":"r","ts":-5,"teachers":[{"version":"v","logits":[1,2,3]}]}"#, "ts", .outOfRange),
        (#"{"id":"r","ts":9223372036854775808,"teachers":[{"version":"v","logits":[1,2,3]}]}"#, "ts", .outOfRange),
        (#"{"id":"r","ts":5,"teachers":[]}"#, "teachers", .wrongLength),
        (#"{"id":"r","ts":5,"teachers":{}}"#, "teachers", .wrongType),
        (#"{"id":"r","ts":5,"teachers":[{"logits":[1,2,3]}]}"#, "teachers[0].version", .missing),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v"}]}"#, "teachers[0].logits", .missing),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]},{"version":"w","logits":[1,2]}]}"#,
         "teachers[1].logits", .wrongLength),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]},{"version":"w","logits":[1,2,1e39]}]}"#,
         "teachers[1].logits[2]", .notFinite),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,NaN,3]}]}"#, "teachers[0].logits[1]", .notFinite),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,-Infinity,3]}]}"#, "teachers[0].logits[1]",
         .notFinite),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,"2",3]}]}"#, "teachers[0].logits[1]", .wrongType),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]},{"version":"v","logits":[1,2,3]}]}"#,
         "teachers[1].version", .duplicateKey),
        (#"{"id":"r","id":"s","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}]}"#, "id", .duplicateKey),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"label":3}"#, "label", .outOfRange),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"label":-1}"#, "label", .outOfRange),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"label":1.0}"#, "label", .wrongType),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"features":[1]}"#, "features",
         .wrongLength),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"student":{"version":"s","logits":[1]}}"#,
         "student.logits", .wrongLength),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"student":{"logits":[1,2,3]}}"#,
         "student.version", .missing),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"x":[1,2}"#, "x", .malformedJSON),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"x":tru}"#, "x", .malformedJSON),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"x":"\q"}"#, "x", .malformedJSON),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"x":"\ud800"}"#, "x", .invalidUTF8),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"x":"\udc00\ud800"}"#, "x", .invalidUTF8),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"x":01}"#, "$", .malformedJSON),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}]} x"#, "$", .malformedJSON),
        (#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],}"#, "$", .malformedJSON),
        (#"[1,2,3]"#, "$", .wrongType),
    ])
    func rules(_ json: String, _ field: String, _ rule: RecordError.Rule) {
        let e = error(json)
        #expect(e?.rule == rule, "\(json) → \(String(describing: e))")
        #expect(e?.field == field, "\(json) → \(String(describing: e))")
    }

    @Test("invalid UTF-8 bytes in any string are rejected")
    func invalidUTF8() {
        let prefix = Array(#"{"id":"r","ts":5,"teachers":[{"version":"v","logits":[1,2,3]}],"slice":""#.utf8)
        for bad: [UInt8] in [[0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x82], [0x80],
                             [0xF0, 0x8F, 0xBF, 0xBF], [0xFF]] {
            let bytes = prefix + bad + Array(#""}"#.utf8)
            do {
                _ = try decoder.decode(bytes)
                Issue.record("accepted invalid UTF-8 \(bad)")
            } catch {
                #expect(error.rule == .invalidUTF8, "\(bad): \(error)")
                #expect(error.field == "slice")
            }
        }
    }

    @Test("id longer than 256 bytes, deep nesting and oversize records are rejected")
    func limits() {
        let longID = String(repeating: "x", count: 257)
        let rest = #""ts":5,"teachers":[{"version":"v","logits":[1,2,3]}]"#
        #expect(error(#"{"id":"\#(longID)","# + rest + "}")?.rule == .outOfRange)
        let okID = String(repeating: "x", count: 256)
        #expect(error(#"{"id":"\#(okID)","# + rest + "}") == nil)
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        #expect(error(#"{"id":"r","# + rest + #","x":\#(deep)}"#)?.rule == .tooDeep)
        let small = SampleDecoder(classes: 3, limits: .init(maxRecordBytes: 64))
        #expect(error(Self.valid, decoder: small)?.rule == .tooLarge)
    }

    @Test("decoded logits equal strtof of the literal text on random records")
    func randomRecords() throws {
        var rng = SeededRandom(seed: 11)
        let d = SampleDecoder(classes: 16, features: 64)
        var sample = DistillSample(classes: 16)
        for n in 0..<300 {
            var texts: [String] = []
            func number() -> String {
                let t = String(format: "%.\(1 + rng.int(9))g", rng.normal() * pow(10, Double(rng.int(9) - 4)))
                texts.append(t)
                return t
            }
            let feats = (0..<64).map { _ in number() }.joined(separator: ",")
            let t1 = (0..<16).map { _ in number() }.joined(separator: ",")
            let t2 = (0..<16).map { _ in number() }.joined(separator: ",")
            let st = (0..<16).map { _ in number() }.joined(separator: ",")
            let json = """
            {"id":"req-\(n)","ts":\(1_700_000_000_000 + n),"features":[\(feats)],
            "teachers":[{"version":"a","logits":[\(t1)]},{"version":"b","logits":[\(t2)]}],
            "student":{"version":"s","logits":[\(st)]},"label":\(n % 16)}
            """
            try d.decode(Array(json.utf8), into: &sample)
            let got = sample.features + sample.teacherLogits + sample.studentLogits
            let want = texts.map { FloatParsingTests.referenceFloat($0) }
            #expect(got.map(\.bitPattern) == want.map(\.bitPattern))
        }
    }

    @Test("label records decode and validate")
    func labelRecords() throws {
        let l = try decoder.decodeLabel(Array(#"{"id":"req-1","label":1,"ts":17,"other":[1]}"#.utf8))
        #expect(l == LabelRecord(id: "req-1", label: 1, timestamp: 17))
        #expect(throws: RecordError.self) { try decoder.decodeLabel(Array(#"{"id":"req-1","ts":17}"#.utf8)) }
        do {
            _ = try decoder.decodeLabel(Array(#"{"id":"req-1","label":5,"ts":17}"#.utf8))
            Issue.record("accepted out-of-range label")
        } catch {
            #expect(error.rule == .outOfRange && error.field == "label")
        }
    }
}
