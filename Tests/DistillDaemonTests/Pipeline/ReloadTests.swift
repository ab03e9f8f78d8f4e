import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Testing

/// SIGHUP: thresholds and rules reload without losing state; other changes are refused.
@Suite("Config reload", .serialized)
struct ReloadTests {
    @Test("A threshold change applies at the next window and keeps the state; a window change is refused")
    func engineReload() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let records = RotationScenario().records()
        let half = records.count / 2
        let engine = try DistillEngine(config: config)
        _ = DistillEngineTests.run(Array(records[..<half]), engine: engine)
        let before = engine.counters.samplesIngested

        // Raising the KL threshold far above the drift means the rotation no longer fires.
        let raised = try DistillConfig.parse(scenarioConfig.replacingOccurrences(
            of: "teacher_kl_drift: {threshold: 0.05", with: "teacher_kl_drift: {threshold: 5.0"))
        try engine.reload(raised)
        var after: [EngineOutput] = []
        for (i, bytes) in records[half...].enumerated() {
            after += engine.handleSample(bytes, key: nil,
                                         at: InputPosition(topic: "samples", partition: 0, offset: Int64(half + i)))
        }
        #expect(engine.counters.samplesIngested == records.count, "state kept: \(before) + the second half")
        #expect(!DistillEngineTests.fired(after).contains { $0.rule == "teacher_kl_drift" })
        #expect(windowReports(after).contains { $0.decisions.contains { $0.rule == "teacher_kl_drift" && $0.threshold == 5.0 } })

        let otherWindows = try DistillConfig.parse(scenarioConfig.replacingOccurrences(of: "size: 60s", with: "size: 30s"))
        let error = #expect(throws: ConfigError.self) { try engine.reload(otherWindows) }
        #expect(error?.key.contains("windows") == true)
        #expect(error?.message.contains("old config stays in force") == true)
        #expect(engine.config.triggers == raised.triggers, "the refused reload changed nothing")
    }

    @Test("SIGHUP to `distilld run` reloads a threshold and refuses a window change, and the daemon keeps running")
    func sighup() async throws {
        let binary = try #require(distilldBinary(), "build the distilld executable first (`swift build`)")
        let broker = try DaemonEndToEndTests.brokerWithTopics()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distilld-hup-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let base = scenarioConfig + """

            brokers: "\(broker.bootstrapServers)"
            consumer_group: hup-\(UUID().uuidString.prefix(8))
            state: {dir: "\(dir.path)/state", interval: 500ms}
            http: {enabled: false}
            """
        let path = dir.appendingPathComponent("distilld.yaml")
        try Data(base.utf8).write(to: path)
        let process = Process()
        process.executableURL = binary
        process.arguments = ["run", "--config", path.path, "--log-level", "notice"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        try await Task.sleep(for: .seconds(3))

        try Data(base.replacingOccurrences(of: "threshold: 0.05", with: "threshold: 0.07").utf8).write(to: path)
        kill(process.processIdentifier, SIGHUP)
        try await Task.sleep(for: .seconds(2))
        try Data(base.replacingOccurrences(of: "size: 60s", with: "size: 30s").utf8).write(to: path)
        kill(process.processIdentifier, SIGHUP)
        try await Task.sleep(for: .seconds(2))
        #expect(process.isRunning, "SIGHUP does not stop the daemon")
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let log = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("config reloaded"), "\(log.suffix(2000))")
        #expect(log.contains("config reload refused") && log.contains("windows/statistics"))
        try? FileManager.default.removeItem(at: dir)
    }
}
