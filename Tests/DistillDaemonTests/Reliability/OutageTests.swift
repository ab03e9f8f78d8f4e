import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// What a fault can act on: the broker, and the second half of the input when the fault feeds it itself.
struct FaultContext: Sendable {
    let broker: EmbeddedBroker
    let producer: KafkaProducer
    let rest: [[UInt8]]

    /// Queues `rest[range]` (all of it by default) to `samples`/0.
    func feed(_ range: Range<Int>? = nil) throws {
        for bytes in rest[range ?? rest.indices] {
            try producer.send(ProducerRecord(topic: "samples", partition: 0, value: bytes)) { _ in }
        }
    }
}

/// Restarts the daemon when it stops on an error, until told to stop.
final class Supervisor: Sendable {
    let stop = Mutex(false)
    let restarts = Mutex(0)
    var stopping: Bool { stop.withLock { $0 } }
}

/// The embedded broker goes down while the daemon runs: nothing lost, nothing doubled, and it recovers by itself.
@Suite("Broker outages", .serialized)
struct OutageTests {
    struct Figures: CustomStringConvertible {
        var fault: String
        var lost = 0, duplicated = 0, unexpected = 0
        var windowsMissing = 0, windowsMismatched = 0, windowsCompared = 0
        var recoverSeconds = 0.0
        var restarts = 0
        var rssBeforeMiB = 0.0, rssPeakDuringFaultMiB = 0.0
        var committed: Int64 = 0
        var maxLag: Int64 = 0
        var rssEndMiB = 0.0
        var description: String {
            String(format: "figure: fault=%@ lost=%d duplicated=%d unexpected=%d windows_missing=%d "
                   + "windows_mismatched=%d recover=%.1fs restarts=%d rss_before=%.0fMiB rss_peak_during_fault=%.0fMiB",
                   fault, lost, duplicated, unexpected, windowsMissing, windowsMismatched, recoverSeconds, restarts,
                   rssBeforeMiB, rssPeakDuringFaultMiB)
        }
    }

    /// Resident set size of this process (the daemon runs in it), MiB.
    static func rssMiB() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb / 1024
    }

    /// The consumer lag the daemon reports, summed over partitions.
    static func lag(_ metrics: DistillMetrics) -> Int64 {
        metrics.render().split(separator: "\n").filter { $0.hasPrefix("distilld_consumer_lag{") }
            .compactMap { Double($0.split(separator: " ").last ?? "").map { Int64($0) } }.reduce(0, +)
    }

    /// Every broker down for `seconds`.
    static func outage(_ seconds: Double) -> @Sendable (FaultContext) async throws -> Void {
        { context in
            let broker = context.broker
            for id in broker.brokerIDs { try broker.setBrokerDown(id) }
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            for id in broker.brokerIDs { try broker.setBrokerUp(id) }
        }
    }

    /// Runs the rotation scenario through the daemon with `fault` injected while the second half of the input is
    /// arriving, then compares alerts and window snapshots with an uninterrupted engine run.
    /// `kafka` adds librdkafka properties (e.g. a short message timeout).
    static func run(_ name: String, brokers: Int = 1, kafka: String = "", scenario: RotationScenario = RotationScenario(),
                    feedsInput: Bool = false,
                    fault: @escaping @Sendable (FaultContext) async throws -> Void) async throws -> Figures {
        let broker = try DaemonEndToEndTests.brokerWithTopics(samplePartitions: 1, brokers: brokers)
        let stateDir = FileManager.default.temporaryDirectory.appendingPathComponent("distilld-outage-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: stateDir) }
        let yaml = scenarioConfig + """

            brokers: "\(broker.bootstrapServers)"
            consumer_group: outage-\(UUID().uuidString.prefix(8))
            state: {dir: "\(stateDir)", interval: 300ms}
            http: {enabled: false}
            kafka: {session.timeout.ms: "6000", heartbeat.interval.ms: "500"\(kafka)}
            """
        let config = try DistillConfig.parse(yaml)
        let records = scenario.records()
        let referenceOutputs = DistillEngineTests.run(records, engine: try DistillEngine(config: config))
        let expected = HostileInputTests.alertIDs(referenceOutputs)
        let expectedFigures = try CrashRecoveryTests.snapshotFigures(of: referenceOutputs, config: config)
        let half = records.count / 2
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: DaemonEndToEndTests.quiet)
        for bytes in records[..<half] {
            try producer.send(ProducerRecord(topic: "samples", partition: 0, value: bytes)) { _ in }
        }
        try await producer.flush(timeout: .seconds(30))

        var figures = Figures(fault: name)
        let log = HookLog()
        let supervisor = Supervisor()
        let metrics = DistillMetrics()
        let end = Int64(records.count)
        let samples0 = TopicPartition("samples", 0)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            // A supervisor: the daemon stops rather than commit past an undelivered output; it is restarted.
            tasks.addTask {
                while !supervisor.stopping {
                    let service = DistillService(config: config, logger: DaemonEndToEndTests.quiet, hooks: log.hooks(),
                                                 metrics: metrics)
                    let group = ServiceGroup(configuration: .init(services: [service], logger: DaemonEndToEndTests.quiet))
                    let watcher = Task {
                        while !supervisor.stopping { try? await Task.sleep(for: .milliseconds(100)) }
                        await group.triggerGracefulShutdown()
                    }
                    do { try await group.run() } catch {
                        print("daemon stopped: \(error)")
                        supervisor.restarts.withLock { $0 += 1 }
                    }
                    watcher.cancel()
                    if !supervisor.stopping { try await Task.sleep(for: .milliseconds(500)) }
                }
            }
            let deadline = ContinuousClock.now + .seconds(120)
            while (log.covered.withLock { $0[samples0] } ?? 0) < Int64(half) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            figures.rssBeforeMiB = rssMiB()
            // The rest of the input arrives while the broker is down; the producers queue and retry.
            let context = FaultContext(broker: broker, producer: producer, rest: Array(records[half...]))
            if !feedsInput { try context.feed() }
            let faultDone = Mutex(false)
            let injection = Task {
                defer { faultDone.withLock { $0 = true } }
                try await fault(context)
            }
            var peak = rssMiB()
            while !faultDone.withLock({ $0 }) {
                try await Task.sleep(for: .milliseconds(200))
                peak = max(peak, rssMiB())
                figures.maxLag = max(figures.maxLag, Self.lag(metrics))
            }
            try await injection.value
            figures.rssPeakDuringFaultMiB = peak
            let up = ContinuousClock.now
            try await producer.flush(timeout: .seconds(120))
            while (log.covered.withLock { $0[samples0] } ?? 0) < end && ContinuousClock.now < deadline + .seconds(120) {
                try await Task.sleep(for: .milliseconds(100))
                figures.maxLag = max(figures.maxLag, Self.lag(metrics))
            }
            figures.rssEndMiB = rssMiB()
            let took = ContinuousClock.now - up
            figures.recoverSeconds = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
            // Let the last windows close and their alerts go out (idle partitions free the watermark).
            let settle = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < settle {
                if try await readAll("distill.alerts", partitions: 3, bootstrap: broker.bootstrapServers).count
                    >= expected.count { break }
                try await Task.sleep(for: .milliseconds(500))
            }
            supervisor.stop.withLock { $0 = true }
            try await tasks.waitForAll()
        }
        await producer.close()
        let probe = try KafkaConsumer(groupID: config.consumerGroup, properties: broker.clientProperties)
        figures.committed = try await probe.committed([samples0])[samples0] ?? -1
        await probe.close()
        let alerts = try await readAll("distill.alerts", partitions: 3, bootstrap: broker.bootstrapServers)
        let ids = alerts.compactMap { m -> String? in
            (try? JSONSerialization.jsonObject(with: Data(m.value)) as? [String: Any])?["id"] as? String
        }
        figures.duplicated = ids.count - Set(ids).count
        figures.lost = expected.subtracting(ids).count
        figures.unexpected = Set(ids).subtracting(expected).count
        figures.restarts = supervisor.restarts.withLock { $0 }
        let check = CrashRecoveryTests.compareSnapshots(
            try await readAll("distill.windows", partitions: 3, bootstrap: broker.bootstrapServers),
            with: expectedFigures)
        figures.windowsCompared = check.compared
        // An unreadable snapshot is a wrong one.
        figures.windowsMismatched = check.mismatched + check.unreadable
        figures.windowsMissing = check.missing
        #expect(!expected.isEmpty)
        return figures
    }

    static func check(_ f: Figures, samples: Int) {
        print(f)
        #expect(f.lost == 0)
        #expect(f.duplicated == 0)
        #expect(f.unexpected == 0)
        #expect(f.committed == Int64(samples), "every sample committed")
        #expect(f.windowsMissing == 0 && f.windowsMismatched == 0 && f.windowsCompared > 50,
                "window figures equal the reference")
        // RSS is the whole test process's: only meaningful when tests run one at a time (`make reliability`).
        if ReliabilityScale.isLong {
            #expect(f.rssPeakDuringFaultMiB - f.rssBeforeMiB < 64, "memory bounded during the fault")
        }
    }

    @Test("All brokers down for 1 s and 5 s (30 s in the long run): nothing lost or doubled, recovered",
          arguments: [1.0, 5.0, 30.0])
    func outage(seconds: Double) async throws {
        guard seconds < 30 || ReliabilityScale.isLong else { return }
        let f = try await Self.run("outage-\(Int(seconds))s", fault: Self.outage(seconds))
        Self.check(f, samples: RotationScenario().records().count)
        #expect(f.restarts == 0, "an outage shorter than the message timeout does not stop the daemon")
    }

    /// If an output was in flight when the timeout expired, the daemon stops without committing and the supervisor
    /// restarts it (`restarts` in the figure); either way nothing may be lost or doubled.
    @Test("An outage longer than the clients' message timeout (2 s down for 6 s): nothing lost or doubled")
    func outageBeyondMessageTimeout() async throws {
        let f = try await Self.run("outage-6s-timeout-2s", kafka: ", message.timeout.ms: \"2000\"",
                                   fault: Self.outage(6))
        Self.check(f, samples: RotationScenario().records().count)
    }

    @Test("Leaders move every 2 s (for a minute in the long run), with fetch and commit error bursts and a coordinator move")
    func leaderChurn() async throws {
        let seconds = ReliabilityScale.isLong ? 60 : 10
        let f = try await Self.run("leader-churn-\(seconds)s", brokers: 3) { context in
            let broker = context.broker
            let topics: [(String, Int32)] = [("samples", 1), ("teachers", 1), ("distill.alerts", 3),
                                             ("distill.windows", 3), ("distill.calibration", 3)]
            for step in 0..<(seconds / 2) {
                let leader = Int32(step % 3) + 1
                for (topic, partitions) in topics {
                    for p in 0..<partitions { try broker.moveLeader(topic: topic, partition: p, to: leader) }
                }
                if step % 2 == 0 {
                    broker.failNextRequests(.fetch, with: [.notLeaderForPartition, .leaderNotAvailable,
                                                           .requestTimedOut])
                } else {
                    broker.failNextRequests(.offsetCommit, with: [.coordinatorNotAvailable, .notCoordinator,
                                                                  .rebalanceInProgress])
                }
                try await Task.sleep(for: .seconds(2))
            }
        }
        Self.check(f, samples: RotationScenario().records().count)
        #expect(f.restarts == 0)
    }

    @Test("Broker latency of 300 ms and 2 s: no delivery errors, nothing lost or doubled", arguments: [300, 2_000])
    func latency(milliseconds: Int) async throws {
        let f = try await Self.run("latency-\(milliseconds)ms") { context in
            let broker = context.broker
            for id in broker.brokerIDs { try broker.setLatency(broker: id, milliseconds: milliseconds) }
            try await Task.sleep(for: .seconds(8))
            for id in broker.brokerIDs { try broker.setLatency(broker: id, milliseconds: 0) }
        }
        Self.check(f, samples: RotationScenario().records().count)
        #expect(f.restarts == 0, "no delivery error stopped the daemon")
    }

    @Test("Overload: a burst of 10,000 samples far faster than the daemon reads: lag reported, memory bounded, caught up")
    func overload() async throws {
        let scenario = RotationScenario(seconds: 2_000, changeAt: 1_000_000)
        let f = try await Self.run("overload-burst-10000", scenario: scenario) { _ in
            try await Task.sleep(for: .seconds(1))
        }
        Self.check(f, samples: scenario.records().count)
        print("figure: overload max_lag=\(f.maxLag) rss_before=\(Int(f.rssBeforeMiB))MiB rss_end=\(Int(f.rssEndMiB))MiB")
        #expect(f.maxLag > 1_000, "the backlog shows in distilld_consumer_lag")
        if ReliabilityScale.isLong { #expect(f.rssEndMiB - f.rssBeforeMiB < 64) }
    }

    @Test("Soak: random faults (30 s; 20 min with DISTILLD_RELIABILITY=long) while input keeps arriving")
    func soak() async throws {
        let seconds = ReliabilityScale.isLong ? 1_200 : 30
        // 10 samples per event-second; half the input is there before the soak, the rest arrives during it. The
        // embedded broker keeps about 5 MiB per partition, so the long soak's input is 40,000 samples.
        let eventSeconds = ReliabilityScale.isLong ? 4_000 : 600
        let scenario = RotationScenario(seconds: eventSeconds, changeAt: Int64(eventSeconds) * 750)
        let rssAtStart = Mutex(0.0)
        let f = try await Self.run("soak-\(seconds)s", brokers: 3, scenario: scenario, feedsInput: true) { context in
            var rng = SplitMix(seed: 2026)
            let broker = context.broker
            let started = ContinuousClock.now
            var fed = 0
            rssAtStart.withLock { $0 = OutageTests.rssMiB() }
            while ContinuousClock.now - started < .seconds(seconds) {
                // Input at a steady pace: all of it by the end of the soak.
                let elapsed = Double((ContinuousClock.now - started).components.seconds)
                let due = min(context.rest.count, Int(Double(context.rest.count) * (elapsed + 1) / Double(seconds)))
                if due > fed { try context.feed(fed..<due); fed = due }
                switch rng.next() % 5 {
                case 0:
                    for id in broker.brokerIDs { try broker.setBrokerDown(id) }
                    try await Task.sleep(for: .milliseconds(500 + Int(rng.next() % 2_500)))
                    for id in broker.brokerIDs { try broker.setBrokerUp(id) }
                case 1:
                    try broker.moveLeader(topic: "samples", partition: 0, to: Int32(rng.next() % 3) + 1)
                    for p in 0..<Int32(3) {
                        try broker.moveLeader(topic: "distill.windows", partition: p, to: Int32(rng.next() % 3) + 1)
                    }
                case 2:
                    for id in broker.brokerIDs { try broker.setLatency(broker: id, milliseconds: 300) }
                    try await Task.sleep(for: .seconds(2))
                    for id in broker.brokerIDs { try broker.setLatency(broker: id, milliseconds: 0) }
                case 3:
                    broker.failNextRequests(.fetch, with: [.notLeaderForPartition, .requestTimedOut])
                default:
                    broker.failNextRequests(.offsetCommit, with: [.coordinatorNotAvailable, .rebalanceInProgress])
                }
                try await Task.sleep(for: .milliseconds(500 + Int(rng.next() % 1_500)))
            }
            try context.feed(fed..<context.rest.count)
        }
        Self.check(f, samples: scenario.records().count)
        let start = rssAtStart.withLock { $0 }
        let growth = (f.rssEndMiB - start) / start
        print(String(format: "figure: soak seconds=%d lost=%d duplicated=%d unread=%d rss_start=%.0fMiB rss_end=%.0fMiB "
                     + "growth=%.1f%% restarts=%d", seconds, f.lost, f.duplicated,
                     scenario.records().count - Int(f.committed), start, f.rssEndMiB, growth * 100, f.restarts))
        if ReliabilityScale.isLong { #expect(growth < 0.10, "memory growth under 10%") }
    }
}
