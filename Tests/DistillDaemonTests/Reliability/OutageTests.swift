import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// What a fault can act on: the broker, the daemon's metrics, and the rest of the input when the fault feeds it
/// itself.
struct FaultContext: Sendable {
    let broker: EmbeddedBroker
    let producer: KafkaProducer
    let rest: [[UInt8]]
    /// Index of `rest[0]` in the whole input: input record i goes to `samples` partition i % `partitions`.
    let first: Int
    let partitions: Int
    let sent: FeedLog
    let metrics: DistillMetrics

    /// Queues `rest[range]` (all of it by default) to `samples`, noting when each record was sent. The records fed
    /// must form a prefix of `rest`, in order.
    func feed(_ range: Range<Int>? = nil) throws {
        for k in range ?? rest.indices {
            sent.sent(k)
            try producer.send(ProducerRecord(topic: "samples", partition: Int32((first + k) % partitions),
                                             value: rest[k])) { _ in }
        }
    }

    /// Feeds all of `rest` at a steady pace over `seconds`, a slice every `step`.
    func feedPaced(over seconds: Double, step: Duration) async throws {
        let started = ContinuousClock.now
        var fed = 0
        while fed < rest.count {
            let elapsed = HeavyKafkaTests.OutageTests.seconds(ContinuousClock.now - started)
            let due = min(rest.count, Int(Double(rest.count) * elapsed / seconds) + 1)
            if due > fed { try feed(fed..<due); fed = due }
            try await Task.sleep(for: step)
        }
    }

    /// Samples the daemon ingested, from its `distilld_samples_total{outcome="ingested"}`.
    var ingested: Int64 { HeavyKafkaTests.OutageTests.metric(metrics, "distilld_samples_total{outcome=\"ingested\"}") }
    /// The consumer lag the daemon reports, summed over partitions.
    var lag: Int64 { HeavyKafkaTests.OutageTests.lag(metrics) }
}

/// When each record of the fed input was sent (wall clock), and how many were fed.
final class FeedLog: Sendable {
    private let times: Mutex<[ContinuousClock.Instant?]>
    init(count: Int) { times = Mutex(Array(repeating: nil, count: count)) }
    func sent(_ k: Int) { let now = ContinuousClock.now; times.withLock { $0[k] = now } }
    var all: [ContinuousClock.Instant?] { times.withLock { $0 } }
    /// Length of the fed prefix.
    var fed: Int { times.withLock { t in t.firstIndex(where: { $0 == nil }) ?? t.count } }
}

/// When each output record (by its `id`) was first read from the output topics.
final class OutputWatch: Sendable {
    let firstSeen = Mutex<[String: ContinuousClock.Instant]>([:])
    let stop = Mutex(false)

    /// Tails `distill.alerts` and `distill.windows` from the beginning until `stop`.
    func run(bootstrap: String) async throws {
        let consumer = try KafkaConsumer(groupID: "watch-\(UUID())", properties: KafkaProperties([
            "bootstrap.servers": bootstrap, "fetch.wait.max.ms": "10"]))
        var starts: [TopicPartition: Int64] = [:]
        for topic in ["distill.alerts", "distill.windows"] {
            for p in 0..<Int32(3) { starts[TopicPartition(topic, p)] = KafkaOffset.beginning }
        }
        try consumer.assign(starts)
        while !stop.withLock({ $0 }) {
            let messages = try await consumer.poll(maxMessages: 1024, timeout: .milliseconds(50)).messages
            let now = ContinuousClock.now
            for m in messages {
                guard let o = try? JSONSerialization.jsonObject(with: Data(m.value)) as? [String: Any],
                      let id = o["id"] as? String else { continue }
                firstSeen.withLock { if $0[id] == nil { $0[id] = now } }
            }
        }
        await consumer.close()
    }
}

/// Restarts the daemon when it stops on an error, until told to stop.
final class Supervisor: Sendable {
    let stop = Mutex(false)
    let restarts = Mutex(0)
    var stopping: Bool { stop.withLock { $0 } }
}

/// The embedded broker goes down while the daemon runs: nothing lost, nothing doubled, and it recovers by itself.
extension HeavyKafkaTests {
    @Suite("Broker outages", .serialized)
    struct OutageTests {
        struct Figures: CustomStringConvertible {
            var fault: String
            var lost = 0, duplicated = 0, unexpected = 0
            var windowsMissing = 0, windowsMismatched = 0, windowsCompared = 0, windowsDuplicated = 0
            var recoverSeconds = 0.0
            var restarts = 0
            var deliveryFailures: Int64 = 0
            var rssBeforeMiB = 0.0, rssPeakDuringFaultMiB = 0.0
            /// Peak RSS from the fault's start until every sample was covered by a checkpoint.
            var rssPeakMiB = 0.0
            var committed: Int64 = 0
            /// The samples partitions' end offsets: the records in the log. More than `samples` when a send that timed
            /// out during the fault had in fact been written and was sent again.
            var logEnd: Int64 = 0
            var maxLag: Int64 = 0
            var rssEndMiB = 0.0
            /// `distilld_consumer_lag` once every sample was covered by a checkpoint (given up to 10 s to reach 0).
            var lagAfterRecovery: Int64 = -1
            /// How many input records were fed in all; `preload` of them before the daemon started.
            var samples = 0, preload = 0
            /// When the fed part of the input (index - preload) was sent.
            var sentAt: [ContinuousClock.Instant?] = []
            /// When each output id was first read (only with `watchOutputs`).
            var firstSeen: [String: ContinuousClock.Instant] = [:]
            /// The input record (index) whose processing produced each alert and window snapshot id in the reference.
            var trigger: [String: Int] = [:]
            /// Alert ids of the reference run.
            var expectedAlerts: Set<String> = []
            var description: String {
                String(format: "figure: fault=%@ lost=%d duplicated=%d unexpected=%d windows_missing=%d "
                       + "windows_mismatched=%d recover=%.1fs restarts=%d rss_before=%.0fMiB rss_peak_during_fault=%.0fMiB",
                       fault, lost, duplicated, unexpected, windowsMissing, windowsMismatched, recoverSeconds, restarts,
                       rssBeforeMiB, rssPeakDuringFaultMiB)
            }

            /// Seconds from sending the record that produced each output (alerts, or window snapshots) to reading it,
            /// for outputs produced by fed records; sorted.
            func latencies(alerts: Bool) -> [Double] {
                var out: [Double] = []
                for (id, seen) in firstSeen where expectedAlerts.contains(id) == alerts {
                    guard let i = trigger[id], i >= preload, i - preload < sentAt.count,
                          let sent = sentAt[i - preload] else { continue }
                    out.append(HeavyKafkaTests.OutageTests.seconds(seen - sent))
                }
                return out.sorted()
            }
        }

        static func seconds(_ d: Duration) -> Double {
            Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }

        /// The value at quantile `q` of sorted `xs` (nearest rank).
        static func quantile(_ xs: [Double], _ q: Double) -> Double {
            xs.isEmpty ? .nan : xs[min(xs.count - 1, max(0, Int((q * Double(xs.count)).rounded(.up)) - 1))]
        }

        /// Resident set size of this process (the daemon runs in it), MiB.
        static func rssMiB() -> Double {
            guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
                  let kb = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
            return kb / 1024
        }

        /// The consumer lag the daemon reports (`distilld_consumer_lag`), summed over partitions.
        static func lag(_ metrics: DistillMetrics) -> Int64 {
            metrics.render().split(separator: "\n").filter { $0.hasPrefix("distilld_consumer_lag{") }
                .compactMap { Double($0.split(separator: " ").last ?? "").map { Int64($0) } }.reduce(0, +)
        }

        /// The value of one series (`name{labels}` exactly as rendered, or a bare name), 0 when absent.
        static func metric(_ metrics: DistillMetrics, _ series: String) -> Int64 {
            let line = metrics.render().split(separator: "\n").first { $0.hasPrefix(series + " ") }
            return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int64($0) } ?? 0
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

        /// The reference: `records` through one engine, uninterrupted, record i read from partition i % `partitions`
        /// (in batches of 97 per partition when there are several), then every partition idle as at the end of a
        /// daemon run. Also which record's processing produced each alert and window snapshot.
        static func reference(_ records: ArraySlice<[UInt8]>, partitions: Int, config: DistillConfig) throws
            -> (outputs: [EngineOutput], trigger: [String: Int]) {
            let engine = try DistillEngine(config: config)
            var outputs: [EngineOutput] = []
            var trigger: [String: Int] = [:]
            func note(_ out: [EngineOutput], _ i: Int) throws {
                guard !out.isEmpty else { return }
                for id in HostileInputTests.alertIDs(out) where trigger[id] == nil { trigger[id] = i }
                for id in try CrashRecoveryTests.snapshotFigures(of: out, config: config).keys where trigger[id] == nil {
                    trigger[id] = i
                }
                outputs += out
            }
            if partitions == 1 {
                for i in records.indices {
                    try note(engine.handleSample(records[i], key: nil, at: InputPosition(
                        topic: "samples", partition: 0, offset: Int64(i))), i)
                }
            } else {
                outputs = DistillEngineWatermarkTests.runPartitioned(Array(records), partitions: partitions, batch: 97,
                                                                     engine: engine)
            }
            for p in 0..<Int32(partitions) { try note(engine.partitionIdle(p), records.count) }
            return (outputs, trigger)
        }

        /// Runs the rotation scenario through the daemon with `fault` injected while the rest of the input is arriving
        /// (after `preload` records, half by default, were processed), then compares alerts and window snapshots with
        /// an uninterrupted engine run over the records fed. A fault that `feedsInput` may feed only part of the rest.
        /// `kafka` adds librdkafka properties (e.g. a short message timeout), `settings` config lines; `prepare` acts on
        /// the broker before anything is produced; `watchOutputs` notes when each output is first read.
        static func run(_ name: String, brokers: Int = 1, partitions: Int = 1, kafka: String = "", settings: String = "",
                        scenario: RotationScenario = RotationScenario(), preload: Int? = nil, feedsInput: Bool = false,
                        watchOutputs: Bool = false,
                        prepare: (EmbeddedBroker, _ group: String) throws -> Void = { _, _ in },
                        fault: @escaping @Sendable (FaultContext) async throws -> Void) async throws -> Figures {
            let broker = try DaemonEndToEndTests.brokerWithTopics(samplePartitions: partitions, brokers: brokers)
            let group = "outage-\(UUID().uuidString.prefix(8))"
            try prepare(broker, group)
            let stateDir = FileManager.default.temporaryDirectory.appendingPathComponent("distilld-outage-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: stateDir) }
            let yaml = scenarioConfig + settings + """

                brokers: "\(broker.bootstrapServers)"
                consumer_group: \(group)
                state: {dir: "\(stateDir)", interval: 300ms}
                http: {enabled: false}
                kafka: {session.timeout.ms: "6000", heartbeat.interval.ms: "500"\(kafka)}
                """
            let config = try DistillConfig.parse(yaml)
            let records = scenario.records()
            let half = preload ?? records.count / 2
            let producer = try KafkaProducer(properties: broker.clientProperties, logger: DaemonEndToEndTests.quiet)
            for i in 0..<half {
                try producer.send(ProducerRecord(topic: "samples", partition: Int32(i % partitions), value: records[i])) { _ in }
            }
            try await producer.flush(timeout: .seconds(30))

            var figures = Figures(fault: name)
            figures.preload = half
            let log = HookLog()
            let supervisor = Supervisor()
            let metrics = DistillMetrics()
            let watch = OutputWatch()
            let inputs = (0..<Int32(partitions)).map { TopicPartition("samples", $0) }
            let covered = { log.covered.withLock { c in inputs.reduce(Int64(0)) { $0 + (c[$1] ?? 0) } } }
            let sent = FeedLog(count: records.count - half)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                // A failure below must still stop the supervisor and the watcher: the group waits for them.
                var finished = false
                defer {
                    if !finished {
                        supervisor.stop.withLock { $0 = true }
                        watch.stop.withLock { $0 = true }
                    }
                }
                // A supervisor: the daemon stops rather than commit past an undelivered output; it is restarted.
                tasks.addTask {
                    while !supervisor.stopping {
                        let service = DistillService(config: config, logger: DaemonEndToEndTests.quiet, hooks: log.hooks(),
                                                     metrics: metrics)
                        let group = ServiceGroup(configuration: .init(services: [service], logger: DaemonEndToEndTests.quiet))
                        let watcher = Task {
                            // Cancelled once its daemon stopped: a cancelled sleep returns at once, so without the
                            // check this loop spun on a pool thread; two restarts took both threads and the run hung.
                            while !supervisor.stopping && !Task.isCancelled {
                                try? await Task.sleep(for: .milliseconds(100))
                            }
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
                if watchOutputs {
                    let bootstrap = broker.bootstrapServers
                    tasks.addTask { try await watch.run(bootstrap: bootstrap) }
                }
                let deadline = ContinuousClock.now + .seconds(120)
                while covered() < Int64(half) && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                }
                figures.rssBeforeMiB = rssMiB()
                // The rest of the input arrives while the fault is on; the producers queue and retry.
                let context = FaultContext(broker: broker, producer: producer, rest: Array(records[half...]), first: half,
                                           partitions: partitions, sent: sent, metrics: metrics)
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
                figures.samples = half + sent.fed
                let end = Int64(figures.samples)
                while covered() < end && ContinuousClock.now < up + .seconds(240) {
                    try await Task.sleep(for: .milliseconds(100))
                    figures.maxLag = max(figures.maxLag, Self.lag(metrics))
                    peak = max(peak, rssMiB())
                }
                figures.rssEndMiB = rssMiB()
                figures.rssPeakMiB = max(peak, figures.rssEndMiB)
                figures.recoverSeconds = seconds(ContinuousClock.now - up)
                let lagDeadline = ContinuousClock.now + .seconds(10)
                while Self.lag(metrics) > 0 && ContinuousClock.now < lagDeadline {
                    try await Task.sleep(for: .milliseconds(200))
                }
                figures.lagAfterRecovery = Self.lag(metrics)
                // The reference over what was fed.
                let reference = try Self.reference(records[..<figures.samples], partitions: partitions, config: config)
                figures.expectedAlerts = HostileInputTests.alertIDs(reference.outputs)
                figures.trigger = reference.trigger
                // Let the last windows close and their alerts go out (idle partitions free the watermark).
                let settle = ContinuousClock.now + .seconds(20)
                while ContinuousClock.now < settle {
                    if try await readAll("distill.alerts", partitions: 3, bootstrap: broker.bootstrapServers).count
                        >= figures.expectedAlerts.count { break }
                    try await Task.sleep(for: .milliseconds(500))
                }
                if watchOutputs { try await Task.sleep(for: .seconds(1)) }
                // Commits catch up once the group is stable again: a member whose session timed out on a loaded
                // machine rejoins and commits at its next checkpoint. Stopped in the middle of that rejoin, its last
                // commit is refused (_ASSIGNMENT_LOST); its checkpoint still holds the offsets.
                let committing = try KafkaConsumer(groupID: config.consumerGroup, properties: broker.clientProperties)
                let logEnd = try await committing.highWatermarks(inputs).values.reduce(0, +)
                let commitDeadline = ContinuousClock.now + .seconds(20)
                while ContinuousClock.now < commitDeadline,
                      ((try? await committing.committed(inputs))?.values.reduce(0) { $0 + max(0, $1) } ?? 0) < logEnd {
                    try await Task.sleep(for: .milliseconds(200))
                }
                await committing.close()
                supervisor.stop.withLock { $0 = true }
                watch.stop.withLock { $0 = true }
                try await tasks.waitForAll()
                let expectedFigures = try CrashRecoveryTests.snapshotFigures(of: reference.outputs, config: config)
                let snapshots = try await readAll("distill.windows", partitions: 3, bootstrap: broker.bootstrapServers)
                let check = CrashRecoveryTests.compareSnapshots(snapshots, with: expectedFigures)
                figures.windowsCompared = check.compared
                // An unreadable snapshot is a wrong one. A snapshot published twice (re-sent after a restart) is compared
                // each time, so it must be equal each time; it is counted, not refused.
                figures.windowsMismatched = check.mismatched + check.unreadable
                figures.windowsMissing = check.missing
                figures.windowsDuplicated = snapshots.count - check.seen - check.unreadable
                finished = true
            }
            await producer.close()
            figures.sentAt = sent.all
            figures.firstSeen = watch.firstSeen.withLock { $0 }
            let probe = try KafkaConsumer(groupID: config.consumerGroup, properties: broker.clientProperties)
            figures.committed = try await probe.committed(inputs).values.reduce(0) { $0 + max(0, $1) }
            figures.logEnd = try await probe.highWatermarks(inputs).values.reduce(0, +)
            await probe.close()
            let alerts = try await readAll("distill.alerts", partitions: 3, bootstrap: broker.bootstrapServers)
            let ids = alerts.compactMap { m -> String? in
                (try? JSONSerialization.jsonObject(with: Data(m.value)) as? [String: Any])?["id"] as? String
            }
            figures.duplicated = ids.count - Set(ids).count
            figures.lost = figures.expectedAlerts.subtracting(ids).count
            figures.unexpected = Set(ids).subtracting(figures.expectedAlerts).count
            figures.restarts = supervisor.restarts.withLock { $0 }
            figures.deliveryFailures = metric(metrics, "distilld_delivery_failures_total")
            #expect(!figures.expectedAlerts.isEmpty)
            return figures
        }

        /// The harness's checks; `memoryBoundMiB` bounds RSS growth during the fault in the long (serial) run.
        static func check(_ f: Figures, memoryBoundMiB: Double? = 64) {
            print(f)
            #expect(f.lost == 0)
            #expect(f.duplicated == 0)
            #expect(f.unexpected == 0)
            #expect(f.logEnd >= Int64(f.samples), "every sample in the log")
            #expect(f.committed == f.logEnd, "every record in the log committed")
            #expect(f.windowsMissing == 0 && f.windowsMismatched == 0 && f.windowsCompared > 50,
                    "window figures equal the reference")
            // RSS is the whole test process's: only meaningful when tests run one at a time (`make reliability`).
            if ReliabilityScale.isLong, let memoryBoundMiB {
                #expect(f.rssPeakDuringFaultMiB - f.rssBeforeMiB < memoryBoundMiB, "memory bounded during the fault")
            }
        }

        @Test("All brokers down for 1 s and 5 s (30 s in the long run): nothing lost or doubled, recovered",
              arguments: [1.0, 5.0, 30.0])
        func outage(seconds: Double) async throws {
            guard seconds < 30 || ReliabilityScale.isLong else { return }
            let f = try await Self.run("outage-\(Int(seconds))s", fault: Self.outage(seconds))
            Self.check(f)
            #expect(f.restarts == 0, "an outage shorter than the message timeout does not stop the daemon")
        }

        /// With nothing in flight when the brokers go down, the outage passes without a restart.
        @Test("An outage longer than the clients' message timeout (2 s down for 6 s): nothing lost or doubled")
        func outageBeyondMessageTimeout() async throws {
            let f = try await Self.run("outage-6s-timeout-2s", kafka: ", message.timeout.ms: \"2000\"",
                                       fault: Self.outage(6))
            Self.check(f)
        }

        /// Three brokers: inputs and the group coordinator on broker 1, every output partition led by broker 3. Broker 3
        /// goes down for 8 s (the message timeout is 2 s) while input keeps arriving, so windows keep closing and their
        /// outputs wait for a leader until they time out: the checkpoint finds the failed delivery and stops the daemon
        /// without committing, and the supervisor restarts it. The restarted daemon recomputes and re-sends from the
        /// last checkpoint: alerts already on the topic are read back and not sent again; a window snapshot may be
        /// published twice, and every copy must equal the reference.
        @Test("Outputs in flight through an outage longer than the message timeout: delivery fails, the daemon restarts, nothing lost or doubled")
        func outputsInFlightBeyondMessageTimeout() async throws {
            let down = ReliabilityScale.isLong ? 20 : 8
            let outputs: [(String, Int32)] = [("distill.alerts", 3), ("distill.windows", 3), ("distill.calibration", 3),
                                              ("distill.students", 1), ("distill.deadletter", 3)]
            let f = try await Self.run("outputs-in-flight-\(down)s-timeout-2s", brokers: 3,
                                       kafka: ", message.timeout.ms: \"2000\"", feedsInput: true,
                                       prepare: { broker, group in
                for (topic, partitions) in [("samples", Int32(1)), ("labels", 1), ("teachers", 1)] {
                    for p in 0..<partitions { try broker.moveLeader(topic: topic, partition: p, to: 1) }
                }
                for (topic, partitions) in outputs {
                    for p in 0..<partitions { try broker.moveLeader(topic: topic, partition: p, to: 3) }
                }
                for g in [group, group + ".registry", group + ".alerts-readback"] {
                    try broker.setGroupCoordinator(g, broker: 1)
                }
            }) { context in
                // Input at a steady pace from 2 s before the outage to 2 s after it.
                let pace = Double(down + 4)
                let feeding = Task { try await context.feedPaced(over: pace, step: .milliseconds(50)) }
                try await Task.sleep(for: .seconds(2))
                try context.broker.setBrokerDown(3)
                try await Task.sleep(for: .seconds(down))
                try context.broker.setBrokerUp(3)
                try await feeding.value
            }
            Self.check(f)
            print("figure: outputs-in-flight down=\(down)s message_timeout=2s restarts=\(f.restarts) "
                  + "delivery_failures=\(f.deliveryFailures) lost=\(f.lost) duplicated=\(f.duplicated) "
                  + "unexpected=\(f.unexpected) windows_compared=\(f.windowsCompared) windows_mismatched="
                  + "\(f.windowsMismatched) windows_missing=\(f.windowsMissing) windows_published_twice="
                  + "\(f.windowsDuplicated) recover=\(String(format: "%.1f", f.recoverSeconds))s")
            #expect(f.restarts >= 1, "a failed delivery stopped the daemon and the supervisor restarted it")
            #expect(f.deliveryFailures >= 1, "distilld_delivery_failures_total counted it")
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
            Self.check(f)
            #expect(f.restarts == 0)
        }

        /// The second half of the input arrives at a steady pace while every broker answers late. An alert's latency
        /// runs from sending the sample whose processing closed its window (the first whose event time moved the
        /// watermark past the window's end plus grace: known from the reference run, which reads the same records in
        /// the same order) to a consumer reading the alert; the same for window snapshots, which are many more.
        @Test("Broker latency of 300 ms and 2 s (and none, the baseline): no delivery errors, nothing lost or doubled; produce→alert latency",
              arguments: [0, 300, 2_000])
        func latency(milliseconds: Int) async throws {
            let seconds = 8.0
            let f = try await Self.run("latency-\(milliseconds)ms", feedsInput: true, watchOutputs: true) { context in
                let broker = context.broker
                for id in broker.brokerIDs { try broker.setLatency(broker: id, milliseconds: milliseconds) }
                try await context.feedPaced(over: seconds, step: .milliseconds(20))
                // Latency stays on until the daemon has read everything and its outputs had time to be read.
                let deadline = ContinuousClock.now + .seconds(60)
                while context.ingested < Int64(context.first + context.rest.count) && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                }
                try await Task.sleep(for: .milliseconds(2 * milliseconds + 500))
                for id in broker.brokerIDs { try broker.setLatency(broker: id, milliseconds: 0) }
            }
            Self.check(f)
            let alerts = f.latencies(alerts: true), windows = f.latencies(alerts: false)
            func ms(_ x: Double) -> Int { x.isNaN ? -1 : Int((x * 1000).rounded()) }
            print("figure: latency-\(milliseconds)ms alerts=\(alerts.count) alert_latency_p50=\(ms(Self.quantile(alerts, 0.5)))ms "
                  + "p99=\(ms(Self.quantile(alerts, 0.99)))ms max=\(ms(alerts.last ?? .nan))ms "
                  + "windows=\(windows.count) window_latency_p50=\(ms(Self.quantile(windows, 0.5)))ms "
                  + "p99=\(ms(Self.quantile(windows, 0.99)))ms max=\(ms(windows.last ?? .nan))ms "
                  + "delivery_failures=\(f.deliveryFailures) restarts=\(f.restarts) lost=\(f.lost) duplicated=\(f.duplicated)")
            #expect(f.restarts == 0, "no delivery error stopped the daemon")
            #expect(f.deliveryFailures == 0)
            let fed = f.trigger.filter { $0.value >= f.preload && $0.value < f.samples }.keys
            let fedAlerts = fed.filter { f.expectedAlerts.contains($0) }.count
            #expect(alerts.count == fedAlerts, "every alert a fed sample produced was read and timed")
            #expect(windows.count == fed.count - fedAlerts, "every window snapshot a fed sample produced was timed")
            #expect(!alerts.isEmpty && Self.quantile(alerts, 0.99) < 60, "sanity: alerts arrive within a minute")
            #expect(windows.count > 20 && Self.quantile(windows, 0.99) < 60)
        }

        /// What the overload test saw while it fed the input.
        struct OverloadPhases: Sendable {
            var rate = 0.0
            var target = 0.0
            var fedCalibration = 0, fedOverload = 0
            var ranOut = false
            var lagAtStart: Int64 = 0, lagAtEnd: Int64 = 0, lagMax: Int64 = 0
            var lagSeries: [Int64] = []
            var overloadSeconds = 0.0
        }

        /// Overload: the daemon's processing rate is measured first in the same run (a calibration phase that keeps a
        /// backlog, so the daemon never waits for input), then input arrives at twice that rate. The volume stays well
        /// under the embedded broker's ~5 MiB per partition: samples of ~200 B over 32 partitions, and 256 bootstrap
        /// replicates (the default is 64) make the daemon slower per sample, so there are fewer of them.
        @Test("Overload: input at twice the measured processing rate for 10 s (60 s long): lag grows and returns to 0, nothing lost or doubled, caught up")
        func overload() async throws {
            let long = ReliabilityScale.isLong
            let overloadSeconds = long ? 60.0 : 10.0
            let calibrationSeconds = long ? 10.0 : 5.0
            let partitions = 32
            // Enough records for any plausible rate; only the prefix fed is compared with the reference. The 13,000
            // records before the daemon starts span 130 s of event time, past the widest window, so the windows' state
            // has its steady size before memory is measured; the teacher change comes during the calibration.
            let scenario = RotationScenario(seconds: long ? 5_000 : 2_500, perSecond: 100, changeAt: 150_000)
            let phases = Mutex(OverloadPhases())
            let f = try await Self.run("overload-\(Int(overloadSeconds))s", partitions: partitions,
                                       settings: "\nstatistics: {replicates: 256}", scenario: scenario,
                                       preload: 13_000, feedsInput: true) { context in
                var fed = 0
                func feed(to n: Int) throws -> Bool {
                    let n = min(n, context.rest.count)
                    if n > fed { try context.feed(fed..<n); fed = n }
                    return n == context.rest.count
                }
                let base = Int64(context.first)
                // Calibration: a deep backlog at all times (3 s of work, at least 10,000 samples), as under overload: the
                // daemon works in full batches, which is faster per sample than keeping up with a trickle. The ingested
                // count moves once per batch (2,048 samples), so the rate is taken between batch ends, after 2 s of
                // warm-up.
                let started = ContinuousClock.now
                var first: (at: ContinuousClock.Instant, ingested: Int64)?
                var last: (at: ContinuousClock.Instant, ingested: Int64)?
                var previous = context.ingested
                var backlog = 10_000
                func measured() -> Double? {
                    guard let first, let last, last.ingested > first.ingested else { return nil }
                    return Double(last.ingested - first.ingested) / HeavyKafkaTests.OutageTests.seconds(last.at - first.at)
                }
                while ContinuousClock.now - started < .seconds(calibrationSeconds + 2) {
                    let ingested = context.ingested
                    if ingested != previous {
                        previous = ingested
                        if ContinuousClock.now - started >= .seconds(2) {
                            if first == nil { first = (ContinuousClock.now, ingested) } else { last = (ContinuousClock.now, ingested) }
                        }
                    }
                    if let rate = measured() { backlog = max(backlog, Int(3 * rate)) }
                    if fed - Int(ingested - base) < backlog { _ = try feed(to: Int(ingested - base) + backlog) }
                    try await Task.sleep(for: .milliseconds(10))
                }
                let rate = try #require(measured(), "the daemon finished at least two batches while calibrating")
                let fedCalibration = fed
                // Overload: twice the measured rate.
                let target = 2 * rate
                let overloadStart = ContinuousClock.now
                let lagAtStart = context.lag
                var series: [Int64] = [lagAtStart]
                var lastSample = overloadStart
                var ranOut = false
                while ContinuousClock.now - overloadStart < .seconds(overloadSeconds) {
                    let elapsed = HeavyKafkaTests.OutageTests.seconds(ContinuousClock.now - overloadStart)
                    ranOut = try feed(to: fedCalibration + Int(target * elapsed))
                    if ranOut { break }
                    if ContinuousClock.now - lastSample >= .milliseconds(500) {
                        series.append(context.lag)
                        lastSample = ContinuousClock.now
                    }
                    try await Task.sleep(for: .milliseconds(10))
                }
                let lagAtEnd = context.lag
                phases.withLock {
                    $0 = OverloadPhases(rate: rate, target: target, fedCalibration: fedCalibration,
                                        fedOverload: fed - fedCalibration, ranOut: ranOut, lagAtStart: lagAtStart,
                                        lagAtEnd: lagAtEnd, lagMax: max(lagAtEnd, series.max() ?? 0),
                                        lagSeries: series,
                                        overloadSeconds: HeavyKafkaTests.OutageTests.seconds(ContinuousClock.now - overloadStart))
                }
            }
            let p = phases.withLock { $0 }
            Self.check(f, memoryBoundMiB: nil)
            let records = scenario.records()
            var bytes = Array(repeating: 0, count: partitions)
            for i in 0..<f.samples { bytes[i % partitions] += records[i].count }
            let fedMiB = Double(bytes.reduce(0, +) - records[..<f.preload].reduce(0) { $0 + $1.count }) / 1_048_576
            print(String(format: "figure: overload seconds=%.0f measured_rate=%.0f/s fed_rate=%.0f/s samples=%d "
                         + "partitions=%d bytes_per_partition_max=%.0fKiB lag_start=%lld lag_end_of_overload=%lld "
                         + "lag_max=%lld lag_after=%lld catch_up=%.1fs lost=%d duplicated=%d windows_compared=%d "
                         + "rss_before=%.0fMiB rss_peak=%.0fMiB rss_end=%.0fMiB fed_during=%.0fMiB",
                         p.overloadSeconds, p.rate, Double(p.fedOverload) / p.overloadSeconds, f.samples, partitions,
                         Double(bytes.max() ?? 0) / 1024, p.lagAtStart, p.lagAtEnd, max(p.lagMax, f.maxLag),
                         f.lagAfterRecovery, f.recoverSeconds, f.lost, f.duplicated, f.windowsCompared,
                         f.rssBeforeMiB, f.rssPeakMiB, f.rssEndMiB, fedMiB))
            #expect(!p.ranOut, "the scenario had records enough for twice the rate")
            #expect(Double(bytes.max() ?? 0) < 0.6 * 5 * 1_048_576, "well under the broker's retention per partition")
            #expect(p.lagAtEnd > p.lagAtStart && Double(p.lagAtEnd) > 0.3 * p.rate * overloadSeconds,
                    "the backlog grows in distilld_consumer_lag")
            #expect(f.lagAfterRecovery == 0, "distilld_consumer_lag returns to 0")
            #expect(f.restarts == 0)
            // Bounded, but not small. The embedded broker runs in this process and keeps what was fed. Under a backlog,
            // librdkafka hands over each partition's records in chunks of up to max.partition.fetch.bytes (1 MiB, about
            // 4,500 records here), so partitions drift apart in event time, and every partition ahead of the watermark
            // keeps its open panes until the slowest one catches up (B = 256 replicates each). The long run measured
            // +516 MiB at the peak; this bound catches growth beyond that, e.g. buffering the whole backlog.
            if long { #expect(f.rssPeakMiB - f.rssBeforeMiB < 1_024, "memory bounded") }
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
                rssAtStart.withLock { $0 = HeavyKafkaTests.OutageTests.rssMiB() }
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
            Self.check(f)
            let start = rssAtStart.withLock { $0 }
            let growth = (f.rssEndMiB - start) / start
            print(String(format: "figure: soak seconds=%d lost=%d duplicated=%d unread=%d rss_start=%.0fMiB rss_end=%.0fMiB "
                         + "growth=%.1f%% restarts=%d", seconds, f.lost, f.duplicated,
                         Int(f.logEnd - f.committed), start, f.rssEndMiB, growth * 100, f.restarts))
            if ReliabilityScale.isLong { #expect(growth < 0.10, "memory growth under 10%") }
        }
    }
}
