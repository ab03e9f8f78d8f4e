import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Testing

// MARK: - Dead letters and student checkpoints

@Suite("Output records: dead letters and student checkpoints")
struct OutputEnvelopeTests {
    let context = OutputsFixture.context

    @Test("a dead letter keeps the original bytes and key and says why and where from in headers")
    func deadLetter() throws {
        let bytes = Array(#"{"id":"r1","ts":5,"teachers":[{"version":"t","logits":[1,2,3]}]}"#.utf8)
        let error = try #require(throws: RecordError.self) { try SampleDecoder(classes: 4).decode(bytes) }
        let message = KafkaMessage(topic: "samples", partition: 7, offset: 1234, key: Array("r1".utf8), value: bytes,
                                   headers: [KafkaHeader("trace", "abc")], timestamp: 99)
        let dead = DeadLetterRecord(message: message, reason: DeadLetterReason(error))
        let record = dead.producerRecord()
        #expect(record.topic == "distill.deadletter")
        #expect(record.value == bytes && record.key == Array("r1".utf8) && record.timestamp == 99)
        #expect(record.headers == [
            KafkaHeader("distill.reason", "wrong_length"),
            KafkaHeader("distill.error", "has 3 values; expected 4"),
            KafkaHeader("distill.field", "teachers[0].logits"),
            KafkaHeader("distill.source.topic", "samples"),
            KafkaHeader("distill.source.partition", "7"),
            KafkaHeader("distill.source.offset", "1234"),
            KafkaHeader("distill.source.timestamp", "99"),
            KafkaHeader("trace", "abc"),
        ])
        let registry = DeadLetterReason(TeacherRegistryError(.invalidRecord, field: "accuracy", reason: "too big"))
        #expect(registry.code == "registry.invalid_record" && registry.field == "accuracy")

        // The headers as a JSON object validate; without distill.reason, or with an unknown distill.* name, not.
        func object(_ headers: [KafkaHeader]) throws -> [UInt8] {
            var o: [String: String] = [:]
            for h in headers where o[h.name] == nil { o[h.name] = String(decoding: h.value ?? [], as: UTF8.self) }
            return Array(try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]))
        }
        let noTimestamp = DeadLetterRecord(sourceTopic: "labels", sourcePartition: 0, sourceOffset: 0, key: nil,
                                           value: [0xff], reason: DeadLetterReason(code: "malformed_json",
                                                                                    message: "not JSON"))
        #expect(noTimestamp.producerRecord().timestamp == nil && noTimestamp.producerRecord().key == nil)
        #expect(noTimestamp.headers.map(\.name).contains("distill.source.timestamp") == false)
        let schema = "dead-letter-headers.schema.json"
        try expectSchemaVerdicts([
            .init(name: "full", schema: schema, json: try object(record.headers)),
            .init(name: "no-timestamp", schema: schema, json: try object(noTimestamp.headers)),
            .init(name: "no-reason", schema: schema,
                  json: try object(record.headers.filter { $0.name != "distill.reason" })),
            .init(name: "unknown-distill-header", schema: schema,
                  json: try object(record.headers + [KafkaHeader("distill.other", "x")])),
        ], expected: ["full": true, "no-timestamp": true, "no-reason": false, "unknown-distill-header": false])
    }

    static func checkpoint() -> StudentCheckpoint {
        let evidence = GateEvidence(agreement: 0.97, agreementLower: 0.955, agreementUpper: 0.98, ece: 0.02,
                                    eceInterval: 0.015...0.027, sampleCount: 12_000)
        let metadata = StudentCheckpointMetadata(
            teacherVersions: ["t-new"], teacherStrategy: "latest", lossName: "hinton", kdTemperature: 0.1,
            samplesSeen: 20_000, optimizerSteps: 625, loss: .nan, evidence: evidence, calibrationTemperature: 1.3,
            decision: "{\"verdict\":\"redistill\"}", createdAtMilliseconds: 1_700_000_000_000, inputDimension: 3,
            classCount: 4, hiddenLayers: [5])
        return StudentCheckpoint(tensors: [
            SafeTensor(name: "trunk.0.weight", shape: [5, 3], values: (0..<15).map { Float($0) / 10 }),
            SafeTensor(name: "trunk.0.bias", shape: [5], values: [0, 0, 0, 0, 0]),
            SafeTensor(name: "head.weight", shape: [4, 5], values: (0..<20).map { Float($0) / 20 }),
            SafeTensor(name: "head.bias", shape: [4], values: [0.1, 0.2, 0.3, 0.4]),
        ], metadata: metadata)
    }

    @Test("a student checkpoint record: safetensors value, key = version, metadata JSON in headers")
    func studentCheckpoint() throws {
        let checkpoint = Self.checkpoint()
        let r = StudentCheckpointRecord(checkpoint: checkpoint, studentVersion: "s2", context: context)
        let record = try r.producerRecord()
        #expect(record.topic == "distill.students" && record.key == Array("s2".utf8))
        #expect(record.value == checkpoint.safetensors())
        let decoded = try StudentCheckpoint(safetensors: record.value)
        #expect(decoded.tensors == checkpoint.tensors && decoded.metadata.samplesSeen == 20_000)
        #expect(decoded.metadata.loss?.isNaN == true, "NaN stays NaN inside the safetensors metadata")
        #expect(record.timestamp == 1_700_000_000_000)
        func header(_ name: String) -> [UInt8]? { record.headers.first { $0.name == name }?.value }
        #expect(header("content-type") == Array("application/octet-stream".utf8))
        #expect(header("distill.format") == Array("distilld.student.v1".utf8))
        #expect(header("distill.student.version") == Array("s2".utf8))
        #expect(header("distill.sha256") == Array(DistillOutputSHA256.hex(record.value).utf8))
        let json = try #require(header("distill.metadata"))
        let object = try outputsObject(json)
        #expect(object["kd_temperature"] as? Double == 0.1)
        #expect(object["loss_value"] is NSNull, "NaN loss is written as null")
        #expect(object["config_revision"] as? String == "rev-test-1")
        #expect(object["created_time"] as? String == "2023-11-14T22:13:20.000Z")
        #expect((object["tensors"] as? [Any])?.count == 4)
        #expect(object["safetensors_bytes"] as? Int == record.value.count)
        var broken = object
        broken.removeValue(forKey: "safetensors_sha256")
        try expectSchemaVerdicts([
            .init(name: "metadata", schema: "student-checkpoint-metadata.schema.json", json: json),
            .init(name: "no-digest", schema: "student-checkpoint-metadata.schema.json",
                  json: Array(try JSONSerialization.data(withJSONObject: broken))),
        ], expected: ["metadata": true, "no-digest": false])
    }
}

// MARK: - Input schemas agree with the decoders

@Suite("Input schemas agree with the decoders")
struct InputSchemaTests {
    static let teacher = #"{"version":"t","logits":[0,1,2,3]}"#

    /// (name, JSON, accepted by SampleDecoder(classes: 4) and by sample.schema.json).
    static let samples: [(String, String, Bool)] = [
        ("minimal", #"{"id":"a","ts":0,"teachers":[\#(teacher)]}"#, true),
        ("full", #"{"id":"a","ts":17,"features":[0.5,-1e3],"#
            + #""teachers":[\#(teacher),{"version":"u","logits":[1,1,1,1]}],"#
            + #""student":{"version":"s","logits":[3,2,1,0]},"label":3,"slice":"eu","future":{"x":[1,null]}}"#, true),
        ("nulls", #"{"id":"a","ts":1,"teachers":[\#(teacher)],"student":null,"label":null,"slice":null,"#
            + #""features":null}"#, true),
        ("id-256-bytes", #"{"id":"\#(String(repeating: "x", count: 256))","ts":1,"teachers":[\#(teacher)]}"#, true),
        ("missing-id", #"{"ts":0,"teachers":[\#(teacher)]}"#, false),
        ("empty-id", #"{"id":"","ts":0,"teachers":[\#(teacher)]}"#, false),
        ("id-257-bytes", #"{"id":"\#(String(repeating: "x", count: 257))","ts":1,"teachers":[\#(teacher)]}"#, false),
        ("negative-ts", #"{"id":"a","ts":-1,"teachers":[\#(teacher)]}"#, false),
        ("fraction-ts", #"{"id":"a","ts":1.5,"teachers":[\#(teacher)]}"#, false),
        ("missing-ts", #"{"id":"a","teachers":[\#(teacher)]}"#, false),
        ("no-teachers", #"{"id":"a","ts":0,"teachers":[]}"#, false),
        ("teacher-no-logits", #"{"id":"a","ts":0,"teachers":[{"version":"t"}]}"#, false),
        ("teacher-empty-version", #"{"id":"a","ts":0,"teachers":[{"version":"","logits":[0,1,2,3]}]}"#, false),
        ("string-logit", #"{"id":"a","ts":0,"teachers":[{"version":"t","logits":[0,"1",2,3]}]}"#, false),
        ("float-overflow", #"{"id":"a","ts":0,"teachers":[{"version":"t","logits":[0,1e39,2,3]}]}"#, false),
        ("negative-label", #"{"id":"a","ts":0,"teachers":[\#(teacher)],"label":-1}"#, false),
        ("student-no-version", #"{"id":"a","ts":0,"teachers":[\#(teacher)],"student":{"logits":[0,1,2,3]}}"#, false),
    ]

    /// (name, JSON, accepted by `decodeLabel` and label.schema.json).
    static let labels: [(String, String, Bool)] = [
        ("label", #"{"id":"a","label":1,"ts":3}"#, true),
        ("label-extra", #"{"id":"a","label":0,"ts":3,"source":"human"}"#, true),
        ("label-missing", #"{"id":"a","ts":3}"#, false),
        ("label-string", #"{"id":"a","label":"1","ts":3}"#, false),
        ("label-negative-ts", #"{"id":"a","label":1,"ts":-3}"#, false),
    ]

    /// (name, JSON, accepted by `TeacherRecord.decode` and teacher.schema.json).
    static let teachers: [(String, String, Bool)] = [
        ("teacher", #"{"version":"v8","major":1,"created_at":5,"accuracy":0.93,"ece":0.02,"temperature":1.4,"#
            + #""data_hash":"sha256:00","status":"active","owner":"ml"}"#, true),
        ("teacher-minimal", #"{"version":"v8","major":0,"created_at":5,"accuracy":1,"ece":0,"status":"lts"}"#, true),
        ("teacher-null-optional", #"{"version":"v8","major":0,"created_at":5,"accuracy":1,"ece":0,"#
            + #""temperature":null,"data_hash":null,"status":"retired"}"#, true),
        ("teacher-accuracy", #"{"version":"v8","major":1,"created_at":5,"accuracy":1.5,"ece":0.02,"status":"active"}"#,
         false),
        ("teacher-status", #"{"version":"v8","major":1,"created_at":5,"accuracy":0.9,"ece":0.02,"status":"gone"}"#,
         false),
        ("teacher-no-major", #"{"version":"v8","created_at":5,"accuracy":0.9,"ece":0.02,"status":"active"}"#, false),
        ("teacher-zero-temperature", #"{"version":"v8","major":1,"created_at":5,"accuracy":0.9,"ece":0.02,"#
            + #""temperature":0,"status":"active"}"#, false),
        ("teacher-empty-version", #"{"version":"","major":1,"created_at":5,"accuracy":0.9,"ece":0.02,"#
            + #""status":"active"}"#, false),
    ]

    @Test("the decoders accept exactly the valid examples")
    func decoders() {
        let decoder = SampleDecoder(classes: 4)
        for (name, json, valid) in Self.samples {
            let ok = (try? decoder.decode(Array(json.utf8))) != nil
            #expect(ok == valid, "sample \(name)")
        }
        for (name, json, valid) in Self.labels {
            #expect(((try? decoder.decodeLabel(Array(json.utf8))) != nil) == valid, "label \(name)")
        }
        for (name, json, valid) in Self.teachers {
            #expect(((try? TeacherRecord.decode(json: json)) != nil) == valid, "teacher \(name)")
        }
    }

    @Test("the input schemas give the same verdicts")
    func schemas() throws {
        var cases: [OutputsSchemaValidator.Case] = []
        var expected: [String: Bool] = [:]
        for (list, schema) in [(Self.samples, "sample.schema.json"), (Self.labels, "label.schema.json"),
                               (Self.teachers, "teacher.schema.json")] {
            for (name, json, valid) in list {
                cases.append(.init(name: name, schema: schema, json: Array(json.utf8)))
                expected[name] = valid
            }
        }
        try expectSchemaVerdicts(cases, expected: expected)
    }
}

// MARK: - Schema files, hashing and time

@Suite("Output schemas, SHA-256 and RFC 3339")
struct OutputSupportTests {
    static let outputs = ["alert.schema.json", "window-snapshot.schema.json", "calibration-check.schema.json",
                          "student-checkpoint-metadata.schema.json"]
    static let inputs = ["sample.schema.json", "label.schema.json", "teacher.schema.json"]

    /// Paths of properties (under `properties`, `patternProperties` or `$defs`) with no `description`.
    static func undescribed(_ node: Any, path: String) -> [String] {
        var out: [String] = []
        if let o = node as? [String: Any] {
            for container in ["properties", "$defs"] {
                for (k, v) in (o[container] as? [String: Any]) ?? [:] {
                    if (v as? [String: Any])?["description"] == nil { out.append(path + "/" + container + "/" + k) }
                }
            }
            for (k, v) in o { out += undescribed(v, path: path + "/" + k) }
        } else if let a = node as? [Any] {
            for (i, v) in a.enumerated() { out += undescribed(v, path: path + "/\(i)") }
        }
        return out
    }

    @Test("every schema is draft 2020-12 with a description on every property; outputs closed, inputs open",
          arguments: outputs + inputs + ["dead-letter-headers.schema.json"])
    func schemaFile(_ name: String) throws {
        let url = OutputsSchemaValidator.schemasDirectory.appendingPathComponent(name)
        let schema = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        #expect(schema["$schema"] as? String == "https://json-schema.org/draft/2020-12/schema")
        #expect(schema["description"] is String)
        #expect(Self.undescribed(schema, path: name).isEmpty, "\(Self.undescribed(schema, path: name))")
        if Self.outputs.contains(name) { #expect(schema["additionalProperties"] as? Bool == false) }
        if Self.inputs.contains(name) { #expect(schema["additionalProperties"] as? Bool == true) }
    }

    @Test("SHA-256 matches the FIPS 180-4 test vectors")
    func sha256() {
        #expect(DistillOutputSHA256.hex(Array("".utf8))
            == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(DistillOutputSHA256.hex(Array("abc".utf8))
            == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(DistillOutputSHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(DistillOutputSHA256.hex([UInt8](repeating: 0x61, count: 1_000_000))
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // Padding edge cases: 55, 56 and 64 bytes.
        #expect(DistillOutputSHA256.hex([UInt8](repeating: 0x61, count: 55))
            == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318")
        #expect(DistillOutputSHA256.hex([UInt8](repeating: 0x61, count: 56))
            == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
        #expect(DistillOutputSHA256.hex([UInt8](repeating: 0x61, count: 64))
            == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
    }

    @Test("RFC 3339 from event-time ms matches Foundation's ISO 8601 formatter",
          arguments: [Int64(0), 1, 999, 1_700_000_000_123, -1, -600_000, 951_782_400_000, 4_102_444_799_999,
                      253_402_300_799_999])
    func rfc3339(_ ms: Int64) {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        f.timeZone = TimeZone(identifier: "UTC")
        let want = f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
        #expect(DistillOutputTime.rfc3339(milliseconds: ms) == want)
    }

    @Test("RFC 3339 clamps to four-digit years")
    func rfc3339Clamp() {
        #expect(DistillOutputTime.rfc3339(milliseconds: .max) == "9999-12-31T23:59:59.999Z")
        #expect(DistillOutputTime.rfc3339(milliseconds: .min) == "0000-01-01T00:00:00.000Z")
    }
}

// MARK: - Example records shipped beside the schemas

@Suite("Example records in streams/schemas/examples")
struct OutputExampleTests {
    static var examplesDirectory: URL { OutputsSchemaValidator.schemasDirectory.appendingPathComponent("examples") }

    /// One example of every record, from the fixture run (written only when asked, see `examplesValidate`).
    static func examples() throws -> [(String, [UInt8])] {
        let out = try #require(OutputsFixture.shared)
        let context = OutputsFixture.context
        let alerts = AlertEvent.events(from: out.decisions, context: context)
        let fired = try #require(alerts.first { $0.type == .triggerFired && $0.data.group != nil })
        let resolved = try #require(alerts.first { $0.type == .triggerResolved })
        let regressed = try #require(alerts.first { $0.type == .teacherRegressed })
        let major = try #require(alerts.first { $0.data.trigger == "teacher_major_version" })
        let report = try #require(out.reports.first { $0.end == OutputsFixture.origin + 60 * OutputsFixture.minute })
        let snapshot = WindowSnapshot(report: report, context: context)
        let check = try #require(out.checks.first { $0.version == "t-new" })
        let student = StudentCheckpointRecord(checkpoint: OutputEnvelopeTests.checkpoint(), studentVersion: "s2",
                                              context: context)
        let dead = DeadLetterRecord(sourceTopic: "samples", sourcePartition: 7, sourceOffset: 1234,
                                    sourceTimestamp: 1_700_000_000_000, key: Array("r1".utf8), value: [],
                                    reason: DeadLetterReason(code: "wrong_length", message: "has 3 values; expected 4",
                                                             field: "teachers[0].logits"))
        var headers: [String: String] = [:]
        for h in dead.distillHeaders { headers[h.name] = h.value }
        return [
            ("alert.fired.json", try fired.jsonBytes()),
            ("alert.resolved.json", try resolved.jsonBytes()),
            ("alert.teacher-regressed.json", try regressed.jsonBytes()),
            ("alert.major-version.json", try major.jsonBytes()),
            ("window-snapshot.json", try snapshot.jsonBytes()),
            ("calibration-check.json", try CalibrationCheckRecord(check, context: context).jsonBytes()),
            ("student-checkpoint-metadata.json", try DistillOutputJSON.encode(student.metadata)),
            ("dead-letter-headers.json",
             Array(try JSONSerialization.data(withJSONObject: headers, options: [.sortedKeys]))),
            ("sample.json", Array(InputSchemaTests.samples[1].1.utf8)),
            ("label.json", Array(InputSchemaTests.labels[0].1.utf8)),
            ("teacher.json", Array(InputSchemaTests.teachers[0].1.utf8)),
        ]
    }

    @Test("every shipped example validates against the schema its name starts with")
    func examplesValidate() throws {
        let fm = FileManager.default
        if ProcessInfo.processInfo.environment["DISTILLD_WRITE_SCHEMA_EXAMPLES"] == "1" {
            try fm.createDirectory(at: Self.examplesDirectory, withIntermediateDirectories: true)
            for (name, bytes) in try Self.examples() {
                try Data(bytes).write(to: Self.examplesDirectory.appendingPathComponent(name))
            }
        }
        let names = try fm.contentsOfDirectory(atPath: Self.examplesDirectory.path).filter { $0.hasSuffix(".json") }
            .sorted()
        #expect(names.count >= 11, "examples: \(names)")
        var cases: [OutputsSchemaValidator.Case] = []
        var expected: [String: Bool] = [:]
        for name in names {
            let stem = String(name.prefix { $0 != "." })
            let bytes = Array(try Data(contentsOf: Self.examplesDirectory.appendingPathComponent(name)))
            cases.append(.init(name: name, schema: stem + ".schema.json", json: bytes))
            expected[name] = true
        }
        try expectSchemaVerdicts(cases, expected: expected)
    }
}
