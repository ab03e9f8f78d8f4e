import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// Counts what the daemon reports through its hooks.
final class HookLog: Sendable {
    let alerts = Mutex<[AlertEvent]>([])
    let checkpoints = Mutex(0)
    let ready = Mutex(false)
    let assigned = Mutex(false)
    /// The input offsets covered by the last checkpoint.
    let covered = Mutex<[TopicPartition: Int64]>([:])

    func hooks() -> DistillServiceHooks {
        DistillServiceHooks(
            instance: "test",
            onReady: { self.ready.withLock { $0 = true } },
            onAlert: { event in self.alerts.withLock { $0.append(event) } },
            onCheckpoint: { offsets in
                self.checkpoints.withLock { $0 += 1 }
                self.covered.withLock { $0 = offsets }
            },
            onAssigned: { _ in self.assigned.withLock { $0 = true } })
    }
}

/// Reads every record of a topic from the beginning up to its current end (high watermarks).
func readAll(_ topic: String, partitions: Int32, bootstrap: String) async throws -> [KafkaMessage] {
    let consumer = try KafkaConsumer(groupID: "reader-\(UUID())", properties: KafkaProperties([
        "bootstrap.servers": bootstrap]))
    let tps = (0..<partitions).map { TopicPartition(topic, $0) }
    try consumer.assign(Dictionary(uniqueKeysWithValues: tps.map { ($0, KafkaOffset.beginning) }))
    var remaining: [TopicPartition: Int64] = [:]
    for (tp, lag) in try await consumer.lag() where lag.highWatermark > 0 { remaining[tp] = lag.highWatermark }
    var out: [KafkaMessage] = []
    let deadline = ContinuousClock.now + .seconds(30)
    while !remaining.isEmpty && ContinuousClock.now < deadline {
        for m in try await consumer.poll(maxMessages: 4096, timeout: .milliseconds(200)).messages {
            out.append(m)
            if let end = remaining[m.topicPartition], m.offset + 1 >= end { remaining[m.topicPartition] = nil }
        }
    }
    await consumer.close()
    return out
}

/// The daemon over the embedded broker: scenario in, alerts out, checkpoints and commits.
@Suite("distilld run end to end", .serialized, .hangGuard())
struct DaemonEndToEndTests {
    static var quiet: Logger {
        var logger = Logger(label: "e2e")
        logger.logLevel = .warning
        return logger
    }

    /// An embedded broker with every topic of `streams/topics.yaml`.
    /// `samplePartitions` overrides the `samples` and `labels` partition counts.
    static func brokerWithTopics(samplePartitions: Int? = nil, brokers: Int = 1) throws -> EmbeddedBroker {
        let broker = try EmbeddedBroker(brokers: brokers, logger: quiet)
        var specs = try TopicCatalog.load(path: packageRoot.appendingPathComponent("streams/topics.yaml").path).specs
        if let samplePartitions {
            for i in specs.indices where ["samples", "labels"].contains(specs[i].name) {
                specs[i].partitions = samplePartitions
            }
        }
        try broker.createTopics(specs)
        return broker
    }

    /// Runs the daemon until `done` or the deadline, then shuts it down gracefully.
    static func runDaemon(_ config: DistillConfig, log: HookLog, until done: @escaping @Sendable () -> Bool)
        async throws {
        let service = DistillService(config: config, logger: quiet, hooks: log.hooks())
        let group = ServiceGroup(configuration: .init(services: [service], logger: quiet))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let deadline = ContinuousClock.now + .seconds(90)
            while !done() && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test("A rotation scenario fires teacher_kl_drift once; SIGTERM checkpoints; a restart reprocesses nothing")
    func scenarioAlertsOnceAndRestartsClean() async throws {
        let broker = try DaemonEndToEndTests.brokerWithTopics()
        let stateDir = FileManager.default.temporaryDirectory.appendingPathComponent("distilld-e2e-\(UUID())").path
        let yaml = scenarioConfig + """

            brokers: "\(broker.bootstrapServers)"
            consumer_group: e2e-\(UUID().uuidString.prefix(8))
            state: {dir: "\(stateDir)", interval: 500ms}
            kafka: {session.timeout.ms: "6000", heartbeat.interval.ms: "500"}
            """
        let config = try DistillConfig.parse(yaml)

        // The scenario goes to one partition, in event-time order.
        let records = RotationScenario().records()
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: Self.quiet)
        for bytes in records {
            try producer.send(ProducerRecord(topic: "samples", partition: 0, value: bytes)) { _ in }
        }
        try await producer.flush(timeout: .seconds(30))

        let log = HookLog()
        let end = Int64(records.count)
        try await Self.runDaemon(config, log: log) {
            // Done once a checkpoint covers the whole input and the windows closed (the 31 empty partitions count
            // as idle after 3 s, then partition 0 drives the watermark).
            log.covered.withLock { $0[TopicPartition("samples", 0)] } == end && log.alerts.withLock { !$0.isEmpty }
        }
        #expect(log.covered.withLock { $0[TopicPartition("samples", 0)] } == end, "the daemon read the whole input")
        let alerts = try await readAll("distill.alerts", partitions: 3, bootstrap: broker.bootstrapServers)
        let kl = alerts.filter { String(decoding: $0.value, as: UTF8.self).contains("\"subject\":\"teacher_kl_drift\"") }
        #expect(kl.count == 1, "one teacher_kl_drift episode on distill.alerts")
        let event = try #require(kl.first)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(event.value)) as? [String: Any])
        #expect(json["specversion"] as? String == "1.0")
        #expect(json["type"] as? String == "distill.trigger.fired")
        #expect((json["id"] as? String)?.isEmpty == false)
        #expect(String(decoding: event.key ?? [], as: UTF8.self).hasPrefix("teacher_kl_drift|"))
        let windows = try await readAll("distill.windows", partitions: 3, bootstrap: broker.bootstrapServers)
        #expect(!windows.isEmpty, "window snapshots were published")
        #expect(FileManager.default.fileExists(atPath: stateDir + "/state.ckpt"), "SIGTERM left a checkpoint")

        // The group's committed offset is the end of the input: nothing left to reprocess.
        let probe = try KafkaConsumer(groupID: config.consumerGroup, properties: broker.clientProperties)
        let committed = try await probe.committed([TopicPartition("samples", 0)])
        #expect(committed[TopicPartition("samples", 0)] == Int64(records.count))
        await probe.close()

        // Restart: restores the checkpoint, emits no alert again, publishes no window twice.
        let again = HookLog()
        try await Self.runDaemon(config, log: again) {
            again.assigned.withLock { $0 } && again.checkpoints.withLock { $0 } >= 3
        }
        #expect(again.assigned.withLock { $0 }, "the restarted daemon got its partition")
        #expect(again.covered.withLock { $0[TopicPartition("samples", 0)] } == end, "resumed at the end")
        let alertsAfter = try await readAll("distill.alerts", partitions: 3, bootstrap: broker.bootstrapServers)
        let windowsAfter = try await readAll("distill.windows", partitions: 3, bootstrap: broker.bootstrapServers)
        #expect(alertsAfter.count == alerts.count, "no alert sent twice")
        #expect(windowsAfter.count == windows.count, "the restart reprocessed nothing")
        #expect(again.alerts.withLock { $0.isEmpty })
        try? FileManager.default.removeItem(atPath: stateDir)
    }
}
