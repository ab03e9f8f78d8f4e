import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Testing

/// SIGHUP: thresholds and rules reload without losing state; other changes are refused.
@Suite("Config reload", .serialized, .hangGuard())
struct ReloadTests {
    @Test("A threshold change applies at the next window and keeps the state; a pane-size change is refused")
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

        let otherPanes = try DistillConfig.parse(scenarioConfig.replacingOccurrences(
            of: "size: 60s, slide: 10s", with: "size: 60s, slide: 15s"))
        let error = #expect(throws: ConfigError.self) { try engine.reload(otherPanes) }
        #expect(error?.key == "windows.fast")
        #expect(error?.message.contains("pane size") == true)
        #expect(error?.message.contains("old config stays in force") == true)
        #expect(engine.config.triggers == raised.triggers, "the refused reload changed nothing")
        #expect(engine.config.statistics == raised.statistics)
    }

    @Test("A window change that keeps the pane size keeps its panes: figures after it equal a run that had it from the start")
    func windowReshapeKeepsPanes() throws {
        let config = try DistillConfig.parse(scenarioConfig)
        let shorterText = scenarioConfig.replacingOccurrences(of: "size: 60s, slide: 10s", with: "size: 30s, slide: 10s")
        let shorter = try DistillConfig.parse(shorterText)
        let records = RotationScenario().records()
        let half = records.count / 2
        let engine = try DistillEngine(config: config)
        _ = DistillEngineTests.run(Array(records[..<half]), engine: engine)
        try engine.reload(shorter)
        var after: [EngineOutput] = []
        for (i, bytes) in records[half...].enumerated() {
            after += engine.handleSample(bytes, key: nil,
                                         at: InputPosition(topic: "samples", partition: 0, offset: Int64(half + i)))
        }
        let reference = DistillEngineTests.run(records, engine: try DistillEngine(config: shorter))
        func fast(_ o: [EngineOutput]) -> [DistillWindow] {
            DistillEngineWatermarkTests.closedWindows(o).filter { $0.name == "fast" }
        }
        let got = fast(after), want = Dictionary(fast(reference).map { ($0.end, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(got.count > 10)
        #expect(got.allSatisfy { $0.end - $0.start == 30_000 }, "the new size applies at once")
        // The first windows after the reload reach back before it; equal sample counts show its panes were kept.
        for w in got {
            let ref = try #require(want[w.end], "reference has a window ending \(w.end)")
            #expect(w.samples == ref.samples, "window ending \(w.end): same samples as a run with 30 s from the start")
            for (key, stats) in w.groups where key.student != DistillEngine.onlineStudentVersion {
                #expect(stats == ref.groups[key], "\(key): same figures (same panes, same merge order)")
            }
        }
        // Growing back to 60 s: no window is computed over panes the 30 s shape already dropped.
        try engine.reload(config)
        #expect(engine.config.statistics == config.statistics)
    }

    @Test("SIGHUP to `distilld run` reloads a threshold and refuses a pane-size change, and the daemon keeps running")
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
        process.arguments = ["run", "--config", path.path, "--log-level", "info"]
        let logFile = dir.appendingPathComponent("distilld.log")
        FileManager.default.createFile(atPath: logFile.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: logFile)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        func log() -> String {
            String(decoding: FileManager.default.contents(atPath: logFile.path) ?? Data(), as: UTF8.self)
        }
        // Waits for a log line rather than a fixed time: on a loaded machine the daemon can take seconds to start
        // or to serve a signal, and a second SIGHUP sent before the first is served merges with it.
        func awaitLog(_ text: String) async throws {
            let deadline = ContinuousClock.now + .seconds(60)
            while !log().contains(text) && process.isRunning && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        try await awaitLog("distilld running")

        try Data(base.replacingOccurrences(of: "threshold: 0.05", with: "threshold: 0.07").utf8).write(to: path)
        kill(process.processIdentifier, SIGHUP)
        try await awaitLog("config reloaded")
        try Data(base.replacingOccurrences(of: "size: 60s, slide: 10s", with: "size: 60s, slide: 15s").utf8)
            .write(to: path)
        kill(process.processIdentifier, SIGHUP)
        try await awaitLog("config reload refused")
        try await Task.sleep(for: .milliseconds(500))
        #expect(process.isRunning, "SIGHUP does not stop the daemon")
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let text = log()
        #expect(text.contains("config reloaded"), "\(text.suffix(2000))")
        #expect(text.contains("config reload refused") && text.contains("windows.fast") && text.contains("pane size"),
                "\(text.suffix(2000))")
        try? FileManager.default.removeItem(at: dir)
    }
}
