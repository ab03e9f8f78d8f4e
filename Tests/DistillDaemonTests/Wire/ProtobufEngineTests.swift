import DistillCore
import DistillDaemon
import DistillWire
import Foundation
import Testing

// MARK: - The engine on protobuf topics

/// The rotation scenario with everything a record can carry: features (the online student learns), a served
/// student, slices, inline labels and late labels on the labels topic, and one bad record of each fault kind.
struct RichRotationScenario {
    enum Input {
        case sample(DistillSample)
        case label(LabelRecord)
        case fault(WireRecord)
    }

    var seconds = 240
    var perSecond = 10
    var changeAt: Int64 = 120_000
    var start: Int64 = 1_795_430_000_000

    func inputs() -> [Input] {
        var rng = SplitMix(seed: 11)
        var out: [Input] = []
        var late: [(due: Int, label: LabelRecord)] = []
        let faults = ProtobufValidationTests.faults(classes: 4, features: 3).map { $0.1 }
        for i in 0..<(seconds * perSecond) {
            let ts = start + Int64(i) * 1000 / Int64(perSecond)
            let z = (0..<4).map { _ in Float(rng.normal() * 2) }
            let v2 = ts - start >= changeAt ? zip(z, [1.5, -1.5, 0, 0] as [Float]).map { $0 + $1 } : z
            let label = z.indices.max { z[$0] < z[$1] }!
            let student = z.map { $0 * 0.8 + Float(rng.normal() * 0.5) }
            let features = [z[0] / 2, z[1] / 2, Float(rng.normal())]
            let labelFate = rng.uniform()
            let sample = DistillSample(
                id: "req-\(i)", timestamp: ts, classes: 4, features: features, teacherVersions: ["v1", "v2"],
                teacherLogits: z + v2, studentVersion: "s1", studentLogits: student,
                label: labelFate < 0.4 ? label : nil, slice: ["web", "ios", ""][i % 3])
            out.append(.sample(sample))
            if labelFate >= 0.4 && labelFate < 0.7 {
                late.append((i + 25, LabelRecord(id: "req-\(i)", label: label, timestamp: ts + 2_000)))
            }
            while let first = late.first, first.due <= i {
                out.append(.label(first.label))
                late.removeFirst()
            }
            if i % 71 == 35 { out.append(.fault(faults[(i / 71) % faults.count])) }
        }
        return out
    }
}

@Suite("Protobuf topics through the engine")
struct ProtobufEngineTests {
    static let config = """
        model: {classes: [a, b, c, d], features: 3}
        windows:
          fast: {size: 60s, slide: 10s, grace: 1s}
          drift: {size: 120s, slide: 20s, grace: 1s}
        triggers:
          teacher_kl_drift: {threshold: 0.05, min_samples: 200, cooldown: 10m}
          teacher_accuracy_delta: {min_samples: 200}
          teacher_ece_delta: {min_samples: 200}
          teacher_regressed: {min_samples: 200}
        calibration: {min_samples: 50, window: {size: 60s, slide: 60s, grace: 1s}}
        student: {checkpoint_every: 300, gate_agreement: 0.0}
        labels: {join_window: 1m}
        """

    /// Feeds every input, written in `format`, to a fresh engine; returns its outputs and the engine.
    static func run(_ inputs: [RichRotationScenario.Input], format: RecordFormat) throws
        -> (outputs: [EngineOutput], engine: DistillEngine) {
        let yaml = config + "\ntopics: {formats: {samples: \(format.rawValue), labels: \(format.rawValue)}}\n"
        let engine = try DistillEngine(config: try DistillConfig.parse(yaml))
        var out: [EngineOutput] = []
        // The registry knows both teachers (teacher records are JSON whatever the formats), so the student learns.
        for (n, version) in ["v1", "v2"].enumerated() {
            let record = "{\"version\":\"\(version)\",\"major\":1,\"created_at\":\(1_795_340_000_000 + n * 1000),"
                + "\"accuracy\":0.9,\"ece\":0.02,\"temperature\":1.0,\"data_hash\":\"sha256:t\(n)\","
                + "\"status\":\"active\"}"
            out += engine.handleTeacher(Array(record.utf8), key: nil,
                                        at: InputPosition(topic: "teachers", partition: 0, offset: Int64(n)))
        }
        for (i, input) in inputs.enumerated() {
            let samples = InputPosition(topic: "samples", partition: 0, offset: Int64(i))
            switch input {
            case .sample(let s):
                let bytes = format == .json ? WireRecord(s).json() : ProtobufRecordEncoder.encode(s)
                out += engine.handleSample(bytes, key: nil, at: samples)
            case .fault(let r):
                out += engine.handleSample(format == .json ? r.json() : r.protobuf(), key: nil, at: samples)
            case .label(let l):
                let bytes = format == .json
                    ? Array("{\"id\":\(jsonString(l.id)),\"label\":\(l.label),\"ts\":\(l.timestamp)}".utf8)
                    : ProtobufRecordEncoder.encode(l)
                out += engine.handleLabel(bytes, key: nil,
                                          at: InputPosition(topic: "labels", partition: 0, offset: Int64(i)))
            }
        }
        out += engine.advance(to: RichRotationScenario().start + 400_000)
        return (out, engine)
    }

    @Test("The same scenario as protobuf gives the same alerts, windows, calibration, dead letters and student")
    func sameOutputsAsJSON() throws {
        let inputs = RichRotationScenario().inputs()
        let json = try Self.run(inputs, format: .json)
        let proto = try Self.run(inputs, format: .protobuf)

        func alerts(_ o: [EngineOutput]) -> [String] {
            o.compactMap { if case .decision(let d) = $0 { AlertEvent.id(for: d) } else { nil } }
        }
        func letters(_ o: [EngineOutput]) -> [String] {
            o.compactMap { if case .deadLetter(let r) = $0 { "\(r.reason) \(r.field ?? "")" } else { nil } }
        }
        func calibration(_ o: [EngineOutput]) -> [CalibrationCheck] {
            o.compactMap { if case .calibration(let c) = $0 { c } else { nil } }
        }
        func checkpoints(_ o: [EngineOutput]) -> [[UInt8]] {
            o.compactMap { if case .studentCheckpoint(let c) = $0 { c.safetensors() } else { nil } }
        }

        // The scenario does what it should, so equal outputs mean something.
        #expect(alerts(json.outputs).count >= 1, "the rotation fires")
        #expect(letters(json.outputs).count == inputs.filter { if case .fault = $0 { true } else { false } }.count,
                "\(letters(json.outputs))")
        #expect(json.engine.counters.labelsJoined > 500)
        #expect(!calibration(json.outputs).isEmpty && !checkpoints(json.outputs).isEmpty, "\(json.engine.counters)")

        #expect(alerts(proto.outputs) == alerts(json.outputs))
        #expect(windowReports(proto.outputs) == windowReports(json.outputs))
        #expect(letters(proto.outputs) == letters(json.outputs))
        #expect(calibration(proto.outputs) == calibration(json.outputs))
        #expect(checkpoints(proto.outputs) == checkpoints(json.outputs), "checkpoint bytes (EMA weights) identical")
        #expect(proto.engine.counters == json.engine.counters)
        let weights = try #require(proto.engine.studentWeights), reference = try #require(json.engine.studentWeights)
        #expect(weights.ema.map(\.bitPattern) == reference.ema.map(\.bitPattern))
    }

    @Test("Undecodable bytes on a protobuf topic become a malformed_protobuf dead letter with the bytes untouched")
    func garbageIsDeadLettered() throws {
        let yaml = Self.config + "\ntopics: {formats: {samples: protobuf, labels: protobuf}}\n"
        let engine = try DistillEngine(config: try DistillConfig.parse(yaml))
        let inputs: [[UInt8]] = [[0xFF], Array(#"{"id":"r","ts":5}"#.utf8), [0x0A, 0x09, 0x61]]
        for (i, bytes) in inputs.enumerated() {
            let position = InputPosition(topic: "samples", partition: 3, offset: Int64(i))
            for output in engine.handleSample(bytes, key: [1, 2], at: position)
                + engine.handleLabel(bytes, key: [1, 2], at: position) {
                guard case .deadLetter(let r) = output else {
                    Issue.record("expected a dead letter, got \(output)")
                    continue
                }
                #expect(r.reason == "malformed_protobuf" && r.field == "$" && r.bytes == bytes && r.key == [1, 2])
                #expect(r.message.contains("format"), "\(r.message)")
            }
        }
        #expect(engine.counters.deadLetters == ["malformed_protobuf": 6])
        #expect(engine.counters.samplesIngested == 0)
    }
}

// MARK: - topics.formats in the config

@Suite("Record formats in the config")
struct RecordFormatConfigTests {
    static let base = "model: {classes: [a, b]}\n"

    @Test("JSON by default; each input topic's format is read")
    func formats() throws {
        #expect(try DistillConfig.parse(Self.base).topics.formats == .init(samples: .json, labels: .json))
        let c = try DistillConfig.parse(Self.base + "topics:\n  formats: {samples: protobuf}\n")
        #expect(c.topics.formats == .init(samples: .protobuf, labels: .json))
        let d = try DistillConfig.parse(
            Self.base + "topics: {labels: l2, formats: {labels: protobuf, samples: json}}\n")
        #expect(d.topics.formats == .init(samples: .json, labels: .protobuf) && d.topics.labels == "l2")
    }

    @Test("Bad values and keys name the file, line and key")
    func errors() {
        let cases: [(String, Int, String, String)] = [
            ("topics:\n  formats:\n    samples: avro\n", 4, "topics.formats.samples", "json or protobuf, not 'avro'"),
            ("topics:\n  formats: {labels: JSON}\n", 3, "topics.formats.labels", "json or protobuf"),
            ("topics:\n  formats:\n    teachers: protobuf\n", 4, "topics.formats.teachers", "always JSON"),
            ("topics:\n  formats:\n    alerts: json\n", 4, "topics.formats.alerts", "unknown key"),
            ("topics:\n  formats: protobuf\n", 3, "topics.formats", "expected a mapping"),
        ]
        for (yaml, line, key, message) in cases {
            let error = #expect(throws: ConfigError.self) { try DistillConfig.parse(Self.base + yaml, file: "f.yaml") }
            #expect(error?.file == "f.yaml" && error?.line == line && error?.key == key, "\(String(describing: error))")
            #expect(error?.message.contains(message) == true, "\(String(describing: error))")
        }
    }

    @Test("A SIGHUP reload that changes a format is refused and changes nothing")
    func reloadRefused() throws {
        let engine = try DistillEngine(config: try DistillConfig.parse(scenarioConfig))
        let changed = try DistillConfig.parse(scenarioConfig + "\ntopics: {formats: {samples: protobuf}}\n")
        let error = #expect(throws: ConfigError.self) { try engine.reload(changed) }
        #expect(error?.key == "topics.formats", "\(String(describing: error))")
        #expect(error?.message.contains("old config stays in force") == true)
        #expect(engine.config.topics.formats.samples == .json)
        // The JSON sample is still read as JSON.
        let out = DistillEngineTests.run(Array(RotationScenario(seconds: 1).records()), engine: engine)
        #expect(engine.counters.samplesIngested == 10)
        #expect(out.allSatisfy { if case .deadLetter = $0 { false } else { true } })
        // Reloading the same formats is fine.
        try engine.reload(try DistillConfig.parse(scenarioConfig + "\ntopics: {formats: {samples: json}}\n"))
    }
}
