import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Logging
import ServiceLifecycle
import Testing

/// In-process multi-instance tests run unless DISTILLD_SKIP_INPROCESS_SCALEOUT is set. With several instances in one
/// test process, librdkafka 2.0.2 aborted on a consumer close during a rebalance (`rd_kafka_cgrp_terminated: assert:
/// !rd_kafka_assignment_in_progress`), taking the whole suite down, until `KafkaConsumer.close` left the group first.
/// The churn and process equivalence tests run instances as processes either way.
let inProcessScaleOut = ProcessInfo.processInfo.environment["DISTILLD_SKIP_INPROCESS_SCALEOUT"] == nil

/// One in-process distilld instance with its own service group, stopped gracefully on demand.
final class ScaleOutInstance: Sendable {
    let group: ServiceGroup
    let task: Task<Void, any Error>

    init(config: DistillConfig, name: String) {
        let service = DistillService(config: config, logger: DaemonEndToEndTests.quiet,
                                     hooks: DistillServiceHooks(instance: name))
        let group = ServiceGroup(configuration: .init(services: [service], logger: DaemonEndToEndTests.quiet))
        self.group = group
        task = Task { try await group.run() }
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

/// Several instances in one consumer group give what one instance gives.
/// The Kafka suites that must not overlap, run one at a time: the scale-out tests run several instances each, and the
/// broker-outage tests measure recovery and commits; together they loaded this 2-core machine enough to make the
/// outage tests' commit checks fail.
@Suite("Load-sensitive Kafka suites, one at a time", .serialized, .hangGuard())
struct HeavyKafkaTests {}

extension HeavyKafkaTests {
    @Suite("Scale-out", .serialized)
    struct ScaleOutTests {
        static let partitions = 8

        /// The scenario config with scale-out on, for `broker`.
        static func yaml(_ broker: EmbeddedBroker, group: String) -> String {
            scenarioConfig + """

                brokers: "\(broker.bootstrapServers)"
                topics_file: "\(packageRoot.appendingPathComponent("streams/topics.yaml").path)"
                consumer_group: \(group)
                state: {dir: "/nonexistent/scale-out-keeps-no-local-state", interval: 300ms}
                scale_out: {enabled: true}
                http: {enabled: false}
                kafka: {session.timeout.ms: "6000", heartbeat.interval.ms: "500"}
                """
        }

        /// The reference for `records` under `yaml` with scale-out off: one single-instance engine's alert ids and
        /// window snapshot figures.
        static func reference(_ records: [[UInt8]], yaml: String) throws
            -> (ids: Set<String>, figures: [String: [String: Double]]) {
            var single = try DistillConfig.parse(yaml)
            single.scaleOut.enabled = false
            let reference = DistillEngineWatermarkTests.runPartitioned(
                records, partitions: partitions, batch: 97, engine: try DistillEngine(config: single))
            let ids = Set(reference.compactMap { output -> String? in
                if case .decision(let d) = output { return AlertEvent.id(for: d) }
                return nil
            })
            return (ids, try CrashRecoveryTests.snapshotFigures(of: reference, config: single))
        }

        /// What a run published, against the reference.
        struct Outcome {
            var ids: [String]
            var lost: Int
            var unexpected: Int
            var snapshots: [KafkaMessage]
            var check: (seen: Int, compared: Int, mismatched: Int, missing: Int, unreadable: Int)
            var duplicated: Int { ids.count - Set(ids).count }
            var summary: String {
                "alerts=\(ids.count) lost=\(lost) duplicated=\(duplicated) unexpected=\(unexpected) "
                    + "snapshots=\(snapshots.count) compared=\(check.compared) missing=\(check.missing) "
                    + "mismatched=\(check.mismatched)"
            }
            var figuresMatch: Bool { check.missing == 0 && check.mismatched == 0 }

            /// Alerts lost 0, doubled 0, none unexpected; every reference snapshot published with its figures.
            func expectMatchesReference(expectedIDs: Set<String>) {
                #expect(!expectedIDs.isEmpty)
                #expect(lost == 0)
                #expect(duplicated == 0, "no alert twice")
                #expect(unexpected == 0)
                #expect(check.compared > 50)
                #expect(check.missing == 0)
                #expect(check.mismatched == 0, "window figures equal the single-instance engine's")
                #expect(check.unreadable == 0)
            }
        }

        /// Reads the alerts and window snapshots `broker` holds and compares them with the reference.
        static func outcome(_ broker: EmbeddedBroker, expectedIDs: Set<String>,
                            expectedFigures: [String: [String: Double]]) async throws -> Outcome {
            let ids = try await alertIDs(broker)
            let snapshots = try await readAll("distill.windows", partitions: 3, bootstrap: broker.bootstrapServers)
            return Outcome(ids: ids, lost: expectedIDs.subtracting(ids).count,
                           unexpected: Set(ids).subtracting(expectedIDs).count, snapshots: snapshots,
                           check: CrashRecoveryTests.compareSnapshots(snapshots, with: expectedFigures))
        }

        /// A broker with the scenario's records on 8 partitions (record i on partition i % 8), and the reference: the
        /// same records through one single-instance engine.
        static func scenario() async throws -> (EmbeddedBroker, [[UInt8]], Set<String>, [String: [String: Double]]) {
            let broker = try DaemonEndToEndTests.brokerWithTopics(samplePartitions: partitions)
            let records = RotationScenario().records()
            let (ids, figures) = try reference(records, yaml: yaml(broker, group: "reference"))
            let producer = try KafkaProducer(properties: broker.clientProperties, logger: DaemonEndToEndTests.quiet)
            for (i, r) in records.enumerated() {
                try producer.send(ProducerRecord(topic: "samples", partition: Int32(i % partitions), value: r)) { _ in }
            }
            try await producer.flush(timeout: .seconds(30))
            await producer.close()
            return (broker, records, ids, figures)
        }

        static func alertIDs(_ broker: EmbeddedBroker) async throws -> [String] {
            try await readAll("distill.alerts", partitions: 3, bootstrap: broker.bootstrapServers).compactMap { m in
                (try? JSONSerialization.jsonObject(with: Data(m.value)) as? [String: Any])?["id"] as? String
            }
        }

        /// Waits until every reference window snapshot has been published, or the deadline.
        static func awaitWindows(_ broker: EmbeddedBroker, expected: [String: [String: Double]], within: Duration)
            async throws {
            let deadline = ContinuousClock.now + within
            while ContinuousClock.now < deadline {
                let snapshots = try await readAll("distill.windows", partitions: 3, bootstrap: broker.bootstrapServers)
                if CrashRecoveryTests.compareSnapshots(snapshots, with: expected).missing == 0 { return }
                try await Task.sleep(for: .seconds(1))
            }
        }

        @Test("1, 2 and 3 instances on 8 partitions: the same alert ids and window figures as one single-instance engine",
              .enabled(if: inProcessScaleOut, "DISTILLD_SKIP_INPROCESS_SCALEOUT is set"),
              arguments: [1, 2, 3])
        func equivalence(instances: Int) async throws {
            let (broker, _, expectedIDs, expectedFigures) = try await Self.scenario()
            let config = try DistillConfig.parse(Self.yaml(broker, group: "equivalence-\(instances)"))
            let running = (0..<instances).map { ScaleOutInstance(config: config, name: "instance-\($0)") }
            try await Self.awaitWindows(broker, expected: expectedFigures, within: .seconds(120))
            try await Task.sleep(for: .seconds(1))
            for instance in running { try await instance.stop() }

            let outcome = try await Self.outcome(broker, expectedIDs: expectedIDs, expectedFigures: expectedFigures)
            print("figure: instances=\(instances) expected=\(expectedIDs.count) \(outcome.summary)")
            outcome.expectMatchesReference(expectedIDs: expectedIDs)
        }
    }
}
