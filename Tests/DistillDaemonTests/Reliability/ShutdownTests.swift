import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Testing

/// How many rounds the reliability tests run: a short version in `make test`, the issue's full count when
/// `DISTILLD_RELIABILITY=long` (`make reliability`).
enum ReliabilityScale {
    static var isLong: Bool { ProcessInfo.processInfo.environment["DISTILLD_RELIABILITY"] == "long" }
    static func rounds(short: Int, long: Int) -> Int { isLong ? long : short }
}

/// SIGTERM at random moments: every shutdown is clean, leaves a checkpoint that matches the committed offsets,
/// and the restart reprocesses nothing.
@Suite("Graceful shutdown", .serialized, .hangGuard())
struct ShutdownTests {
    @Test("SIGTERM at random moments: clean exits, a checkpoint each time, committed = checkpointed, 0 reprocessed")
    func sigtermRounds() async throws {
        let rounds = ReliabilityScale.rounds(short: 5, long: 20)
        let binary = try #require(distilldBinary(), "build the distilld executable first (`swift build`)")
        let broker = try DaemonEndToEndTests.brokerWithTopics(samplePartitions: 1)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distilld-term-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let stateDir = dir.appendingPathComponent("state").path
        let yaml = scenarioConfig + """

            brokers: "\(broker.bootstrapServers)"
            topics_file: "\(packageRoot.appendingPathComponent("streams/topics.yaml").path)"
            consumer_group: term-\(UUID().uuidString.prefix(8))
            state: {dir: "\(stateDir)", interval: 400ms}
            http: {enabled: false}
            kafka: {session.timeout.ms: "6000", heartbeat.interval.ms: "500"}
            """
        let configPath = dir.appendingPathComponent("distilld.yaml").path
        try Data(yaml.utf8).write(to: URL(fileURLWithPath: configPath))
        let config = try DistillConfig.parse(yaml)
        let records = RotationScenario().records()

        let producer = try KafkaProducer(properties: broker.clientProperties, logger: DaemonEndToEndTests.quiet)
        let probe = try KafkaConsumer(groupID: config.consumerGroup, properties: broker.clientProperties)
        let samples0 = TopicPartition("samples", 0)
        func committed() async throws -> Int64 { try await probe.committed([samples0])[samples0] ?? 0 }
        func latestCheckpoint() throws -> StateCheckpoint? { try StateStore(directory: stateDir).load().checkpoint }
        func start() throws -> Process {
            let p = Process()
            p.executableURL = binary
            p.arguments = ["run", "--config", configPath, "--log-level", "error"]
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            return p
        }

        var rng = SplitMix(seed: 2024)
        var clean = 0, checkpointsWritten = 0, committedMatches = 0
        var firstCommit: [Double] = []
        var lastSequence: UInt64 = 0
        let chunk = records.count / rounds
        for round in 0...rounds {
            // Round `rounds` is the last run, which finishes the input.
            if round < rounds {
                for bytes in records[(round * chunk)..<((round + 1) * chunk)] {
                    try producer.send(ProducerRecord(topic: "samples", partition: 0, value: bytes)) { _ in }
                }
            } else {
                for bytes in records[(rounds * chunk)...] {
                    try producer.send(ProducerRecord(topic: "samples", partition: 0, value: bytes)) { _ in }
                }
            }
            try await producer.flush(timeout: .seconds(30))
            let before = try await committed()
            if round == rounds && before == Int64(records.count) { break }  // nothing left for a last run
            let p = try start()
            let started = ContinuousClock.now
            let target = round < rounds ? before + 1 : Int64(records.count)
            while try await committed() < target && ContinuousClock.now - started < .seconds(60) {
                try await Task.sleep(for: .milliseconds(100))
            }
            let waited = ContinuousClock.now - started
            firstCommit.append(Double(waited.components.seconds) + Double(waited.components.attoseconds) / 1e18)
            if round < rounds { try await Task.sleep(for: .milliseconds(Int(rng.uniform() * 700))) }
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
            guard round < rounds else { #expect(p.terminationStatus == 0); break }
            if p.terminationReason == .exit && p.terminationStatus == 0 { clean += 1 }
            let checkpoint = try #require(try latestCheckpoint(), "round \(round): a checkpoint exists")
            if checkpoint.sequence > lastSequence { checkpointsWritten += 1 }
            lastSequence = checkpoint.sequence
            let stored = checkpoint.offsets[StateTopicPartition(topic: "samples", partition: 0)]
            if let stored, try await committed() == stored { committedMatches += 1 }
        }
        await producer.close()
        #expect(try await committed() == Int64(records.count), "every sample accounted for")
        await probe.close()

        // The final state counts each sample once: a sample read again after a restart would have been ingested a
        // second time or dropped as a duplicate id.
        let final = try #require(try latestCheckpoint())
        let engine = try DistillEngine(config: config)
        try engine.restore(try #require(final.section(named: "engine")))
        let reprocessed = engine.counters.samplesIngested + engine.counters.duplicateSamples - records.count
        firstCommit.sort()
        print(String(format: "figure: sigterm rounds=%d clean=%d/%d checkpoints=%d/%d committed=checkpointed %d/%d "
                     + "reprocessed=%d restart-to-first-commit p50=%.1fs max=%.1fs",
                     rounds, clean, rounds, checkpointsWritten, rounds, committedMatches, rounds, reprocessed,
                     firstCommit[firstCommit.count / 2], firstCommit.last!))
        #expect(clean == rounds)
        #expect(checkpointsWritten == rounds)
        #expect(committedMatches == rounds, "offsets committed equal the checkpoint's")
        #expect(engine.counters.samplesIngested == records.count)
        #expect(engine.counters.duplicateSamples == 0)
        #expect(reprocessed == 0)
    }
}
