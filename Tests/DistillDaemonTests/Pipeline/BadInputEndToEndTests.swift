import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Testing

/// Bad records over the broker, and what other clients (kcat) read back from the output topics.
@Suite("Bad input and interoperability end to end", .serialized, .hangGuard())
struct BadInputEndToEndTests {
    static let badKinds: [(json: @Sendable (Int) -> String, reason: String)] = [
        ({ "{\"id\":\"bad-\($0)\",\"ts\":1795430100000,\"teachers\":[{\"version\":\"v1\",\"logits\":[1,2]}]}" },
         "wrong_length"),
        ({ "{\"id\":\"bad-\($0)\",\"ts\":1795430100000,\"teachers\":[{\"version\":\"v1\",\"logits\":[1,2,3,NaN]}]}" },
         "not_finite"),
        ({ "{\"ts\":1795430100000,\"n\":\($0),\"teachers\":[{\"version\":\"v1\",\"logits\":[1,2,3,4]}]}" }, "missing"),
        ({ "{\"id\":\"bad-\($0)\",\"ts\":1795430100000,\"label\":7,\"teachers\":[{\"version\":\"v1\",\"logits\":[1,2,3,4]}]}" },
         "out_of_range"),
        ({ "{\"id\":\"bad-\($0)\",\"ts\":1795430100000,\"teachers\":[{\"version\":\"v1\",\"logits\":[1,2,3,4]}" },
         "malformed_json"),
    ]

    @Test("5% bad records: that many dead letters, the clean stream's alerts, outputs kcat reads and schemas accept")
    func badRecordsAndKcat() async throws {
        let kcat = try #require(["/usr/bin/kcat", "/usr/local/bin/kcat"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }, "kcat is installed by `make test`")
        let broker = try DaemonEndToEndTests.brokerWithTopics()
        let stateDir = FileManager.default.temporaryDirectory.appendingPathComponent("distilld-bad-\(UUID())").path
        let yaml = scenarioConfig + """

            brokers: "\(broker.bootstrapServers)"
            consumer_group: bad-\(UUID().uuidString.prefix(8))
            state: {dir: "\(stateDir)", interval: 500ms}
            kafka: {session.timeout.ms: "6000", heartbeat.interval.ms: "500"}
            calibration: {window: {size: 2m, slide: 2m, grace: 1s}, min_samples: 100}
            """
        let config = try DistillConfig.parse(yaml)
        let clean = RotationScenario().records()
        var mixed = clean
        var expectedReasons: [String: Int] = [:]
        let badCount = clean.count / 20
        for i in 0..<badCount {
            let kind = Self.badKinds[i % Self.badKinds.count]
            mixed.insert(Array(kind.json(i).utf8), at: i * 20 + 7)
            expectedReasons[kind.reason, default: 0] += 1
        }
        let reference = try DistillEngine(config: config)
        let expectedIDs = Set(DistillEngineTests.run(clean, engine: reference).compactMap { output -> String? in
            if case .decision(let d) = output { return AlertEvent.id(for: d) }
            return nil
        })

        let producer = try KafkaProducer(properties: broker.clientProperties, logger: DaemonEndToEndTests.quiet)
        for bytes in mixed { try producer.send(ProducerRecord(topic: "samples", partition: 0, value: bytes)) { _ in } }
        try await producer.flush(timeout: .seconds(30))
        await producer.close()

        let log = HookLog()
        let end = Int64(mixed.count)
        try await DaemonEndToEndTests.runDaemon(config, log: log) {
            log.covered.withLock { $0[TopicPartition("samples", 0)] } == end
                && log.alerts.withLock { $0.count } >= expectedIDs.count
        }

        let letters = try await readAll("distill.deadletter", partitions: 3, bootstrap: broker.bootstrapServers)
        var reasons: [String: Int] = [:]
        for m in letters { reasons[m.header("distill.reason") ?? "?", default: 0] += 1 }
        #expect(letters.count == badCount, "one dead letter per bad record")
        #expect(reasons == expectedReasons)
        #expect(letters.allSatisfy { $0.header("distill.source.topic") == "samples" && $0.header("distill.source.offset") != nil })

        // kcat reads the outputs; each record validates against its schema.
        var cases: [OutputsSchemaValidator.Case] = []
        for (topic, schema) in [("distill.alerts", "alert.schema.json"), ("distill.windows", "window-snapshot.schema.json"),
                                ("distill.calibration", "calibration-check.schema.json")] {
            var lines: [String] = []
            for p in 0..<3 {
                let out = try runCommand(kcat, ["-b", broker.bootstrapServers, "-C", "-t", topic, "-p", "\(p)",
                                                "-o", "beginning", "-e", "-q", "-f", "%s\\n"])
                lines += out.split(separator: "\n").map(String.init)
            }
            #expect(!lines.isEmpty, "kcat read \(topic)")
            cases += lines.enumerated().map { .init(name: "\(topic)#\($0.offset)", schema: schema, json: Array($0.element.utf8)) }
            if topic == "distill.alerts" {
                let ids = lines.compactMap {
                    (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["id"] as? String
                }
                #expect(Set(ids) == expectedIDs, "the same alerts as the clean stream")
                #expect(ids.count == Set(ids).count, "none twice")
            }
        }
        if let verdicts = try OutputsSchemaValidator.validate(cases) {
            let invalid = verdicts.filter { !$0.valid }
            #expect(invalid.isEmpty, "\(invalid.prefix(3).map { "\($0.name): \($0.error ?? "")" })")
            #expect(verdicts.count == cases.count)
        }
        try? FileManager.default.removeItem(atPath: stateDir)
    }
}

/// Runs a program and returns its stdout.
func runCommand(_ path: String, _ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}
