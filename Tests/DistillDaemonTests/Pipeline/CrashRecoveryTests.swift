import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Testing

/// The built `distilld` executable next to the test bundle.
func distilldBinary() -> URL? {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("distilld")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return nil
}

/// `kill -9` at random points, then restart: no alert lost, none sent twice.
@Suite("Crash recovery", .serialized, .hangGuard())
struct CrashRecoveryTests {
    @Test("kill -9 at random moments (10, or 20 over 100,000 samples with DISTILLD_RELIABILITY=long): the alert set and window figures equal an uninterrupted run's")
    func killNineTenTimes() async throws {
        let binary = try #require(distilldBinary(), "build the distilld executable first (`swift build`)")
        let long = ReliabilityScale.isLong
        let kills = long ? 20 : 10
        // Short: one samples partition, so windows close and alerts go out mid-run, and kills also land between an
        // alert's publication and the checkpoint that records it. Long: 100,000 samples over 8 partitions (the
        // embedded broker keeps about 5 MiB per partition).
        let partitions = long ? 8 : 1
        let broker = try DaemonEndToEndTests.brokerWithTopics(samplePartitions: partitions)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distilld-crash-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let yaml = scenarioConfig + """

            brokers: "\(broker.bootstrapServers)"
            topics_file: "\(packageRoot.appendingPathComponent("streams/topics.yaml").path)"
            consumer_group: crash-\(UUID().uuidString.prefix(8))
            state: {dir: "\(dir.path)/state", interval: 300ms}
            http: {enabled: false}
            kafka: {session.timeout.ms: "6000", heartbeat.interval.ms: "500"}
            """
        let configPath = dir.appendingPathComponent("distilld.yaml").path
        try Data(yaml.utf8).write(to: URL(fileURLWithPath: configPath))
        let config = try DistillConfig.parse(yaml)

        // The reference: the same records through the engine, uninterrupted.
        let records = long ? RotationScenario(seconds: 10_000, changeAt: 5_000_000).records() : RotationScenario().records()
        // Record i goes to partition i % partitions; the reference reads the same partitions, so its figures are
        // bit-identical to the daemon's (panes merge in partition order).
        let referenceOutputs = DistillEngineWatermarkTests.runPartitioned(
            records, partitions: partitions, batch: 97, engine: try DistillEngine(config: config))
        let expectedIDs = Set(referenceOutputs.compactMap { output -> String? in
            if case .decision(let d) = output { return AlertEvent.id(for: d) }
            return nil
        })
        let expectedFigures = try Self.snapshotFigures(of: referenceOutputs, config: config)

        let producer = try KafkaProducer(properties: broker.clientProperties, logger: DaemonEndToEndTests.quiet)
        let probe = try KafkaConsumer(groupID: config.consumerGroup, properties: broker.clientProperties)
        let inputs = (0..<Int32(partitions)).map { TopicPartition("samples", $0) }
        func committed() async throws -> Int64 {
            try await probe.committed(inputs).values.reduce(0) { $0 + max(0, $1) }
        }
        func start() throws -> Process {
            let p = Process()
            p.executableURL = binary
            p.arguments = ["run", "--config", configPath, "--log-level", "error"]
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            return p
        }
        // Traffic keeps arriving: each round adds a tenth of the scenario, starts the daemon, waits until it has
        // committed progress (restart-to-first-commit is the figure), then kills it at a random later moment.
        var rng = SplitMix(seed: 99)
        var killed = 0
        var firstCommit: [Double] = []
        var alertsSoFar = 0
        var killedAfterPublishing = 0  // killed runs that had published alerts: the read-back at start matters
        let chunk = records.count / kills
        for round in 0..<kills {
            for i in (round * chunk)..<((round + 1) * chunk) {
                try producer.send(ProducerRecord(topic: "samples", partition: Int32(i % partitions),
                                                 value: records[i])) { _ in }
            }
            try await producer.flush(timeout: .seconds(30))
            let before = try await committed()
            let p = try start()
            let started = ContinuousClock.now
            while try await committed() <= before && ContinuousClock.now - started < .seconds(30) {
                try await Task.sleep(for: .milliseconds(100))
            }
            let waited = ContinuousClock.now - started
            firstCommit.append(Double(waited.components.seconds) + Double(waited.components.attoseconds) / 1e18)
            try await Task.sleep(for: .milliseconds(Int(rng.uniform() * 700)))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            if p.terminationReason == .uncaughtSignal { killed += 1 }
            let published = try await readAll("distill.alerts", partitions: 3, bootstrap: broker.bootstrapServers).count
            if published > alertsSoFar { killedAfterPublishing += 1 }
            alertsSoFar = published
        }
        for i in (kills * chunk)..<records.count {
            try producer.send(ProducerRecord(topic: "samples", partition: Int32(i % partitions), value: records[i])) { _ in }
        }
        try await producer.flush(timeout: .seconds(30))
        await producer.close()
        #expect(killed == kills)
        firstCommit.sort()
        print(String(format: "figure: restart-to-first-commit p50=%.1fs max=%.1fs killed-after-publishing=%d",
                     firstCommit[firstCommit.count / 2], firstCommit.last!, killedAfterPublishing))

        // A last, uninterrupted run to the end of the input, then SIGTERM.
        let last = try start()
        let deadline = ContinuousClock.now + .seconds(long ? 600 : 120)
        var done: Int64 = -1
        while done < Int64(records.count) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(500))
            done = try await committed()
        }
        await probe.close()
        #expect(done == Int64(records.count), "every sample accounted for")
        // Idle partitions release the watermark a few seconds after assignment; then the last windows close.
        let settle = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < settle {
            let published = try await readAll("distill.alerts", partitions: 3, bootstrap: broker.bootstrapServers)
            if published.count >= expectedIDs.count { break }
            try await Task.sleep(for: .seconds(1))
        }
        try await Task.sleep(for: .seconds(1))
        last.terminate()
        last.waitUntilExit()
        #expect(last.terminationStatus == 0)

        let alerts = try await readAll("distill.alerts", partitions: 3, bootstrap: broker.bootstrapServers)
        let ids = alerts.compactMap { m -> String? in
            (try? JSONSerialization.jsonObject(with: Data(m.value)) as? [String: Any])?["id"] as? String
        }
        let duplicated = ids.count - Set(ids).count
        let lost = expectedIDs.subtracting(ids).count
        let extra = Set(ids).subtracting(expectedIDs).count
        print("figure: samples=\(records.count) kills=\(killed) alerts=\(ids.count) expected=\(expectedIDs.count) lost=\(lost) "
              + "duplicated=\(duplicated) unexpected=\(extra)")
        #expect(!expectedIDs.isEmpty)
        #expect(lost == 0)
        #expect(duplicated == 0)
        #expect(extra == 0)

        // Window figures: every snapshot published (a window re-emitted after a crash included) equals the
        // uninterrupted reference, and no window is missing.
        let snapshots = try await readAll("distill.windows", partitions: 3, bootstrap: broker.bootstrapServers)
        let check = Self.compareSnapshots(snapshots, with: expectedFigures)
        print("figure: window snapshots=\(snapshots.count) distinct=\(check.seen) expected=\(expectedFigures.count) "
              + "missing=\(check.missing) mismatched=\(check.mismatched)")
        #expect(check.unreadable == 0)
        #expect(check.compared > 50)
        #expect(check.missing == 0)
        #expect(check.mismatched == 0, "window figures equal the uninterrupted run's")
        try? FileManager.default.removeItem(at: dir)
    }

    /// The numbers of every window snapshot an engine run produced, by snapshot id (see `figures(_:)`).
    static func snapshotFigures(of outputs: [EngineOutput], config: DistillConfig) throws
        -> [String: [String: Double]] {
        let context = DistillOutputContext(source: "reference", configRevision: config.revision,
                                           confidenceLevel: config.statistics.confidenceLevel)
        var out: [String: [String: Double]] = [:]
        for case .windowClosed(let window, let reports) in outputs {
            for report in reports {
                let snapshot = WindowSnapshot(report: report, context: context, firstSequence: window.firstSequence)
                if let (id, values) = figures(try snapshot.jsonBytes()) { out[id] = values }
            }
        }
        return out
    }

    /// Published snapshots against the reference's: a snapshot matches when every number is within 1e-9 (relative);
    /// one the reference does not have counts as mismatched, a reference window never published as missing.
    static func compareSnapshots(_ messages: [KafkaMessage], with expected: [String: [String: Double]])
        -> (seen: Int, compared: Int, mismatched: Int, missing: Int, unreadable: Int) {
        var seen = Set<String>()
        var compared = 0, mismatched = 0, unreadable = 0
        for message in messages {
            guard let (id, values) = figures(message.value) else { unreadable += 1; continue }
            seen.insert(id)
            guard let want = expected[id] else { mismatched += 1; continue }
            compared += 1
            let same = want.keys == values.keys && want.allSatisfy { name, x in
                abs(x - values[name]!) <= 1e-9 * max(1, abs(x))
            }
            if !same { mismatched += 1 }
        }
        return (seen.count, compared, mismatched, Set(expected.keys).subtracting(seen).count, unreadable)
    }

    /// A snapshot's id and its numbers: window sample count, each figure's value and interval ends.
    static func figures(_ bytes: [UInt8]) -> (String, [String: Double])? {
        guard let o = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let id = o["id"] as? String, let window = o["window"] as? [String: Any],
              let figures = o["figures"] as? [String: Any] else { return nil }
        var values: [String: Double] = ["window.samples": (window["samples"] as? NSNumber)?.doubleValue ?? -1]
        for (name, figure) in figures {
            guard let figure = figure as? [String: Any] else { continue }
            for part in ["value", "lower", "upper"] {
                if let x = figure[part] as? NSNumber { values[name + "." + part] = x.doubleValue }
            }
        }
        return (id, values)
    }
}
