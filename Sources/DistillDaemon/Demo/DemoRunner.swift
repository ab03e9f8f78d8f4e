import Foundation
import KafkaClient
import Logging
import ServiceLifecycle
import Synchronization

// MARK: - DemoRunner

/// `distilld demo`: the embedded broker, the daemon, and a shipped teacher-rotation stream replayed into it. Alerts
/// and calibration checks are printed as they appear; with `follow == false` it stops once the whole stream has
/// been processed and its windows have closed, and returns a summary.
public struct DemoRunner: Sendable {
    public var configPath: String
    public var samplesPath: String
    public var teachersPath: String
    public var follow: Bool
    public var logger: Logger
    /// Where lines for people go (stdout in the CLI, captured in tests).
    public var print: @Sendable (String) -> Void

    public init(
        configPath: String = "config/demo.yaml", samplesPath: String = "streams/examples/rotation.jsonl",
        teachersPath: String = "streams/examples/rotation-teachers.jsonl", follow: Bool = false, logger: Logger,
        print: @escaping @Sendable (String) -> Void = { Swift.print($0) }
    ) {
        self.configPath = configPath
        self.samplesPath = samplesPath
        self.teachersPath = teachersPath
        self.follow = follow
        self.logger = logger
        self.print = print
    }

    /// What the demo saw.
    public struct Summary: Sendable, Equatable {
        public var samples = 0
        public var processed: Int64 = 0
        public var alerts: [String: Int] = [:]
        public var calibration: [String: Int] = [:]
        public var seconds = 0.0
    }

    public func run() async throws -> Summary {
        var loaded = try DistillConfig.load(path: configPath)
        // A fresh state each run: the demo's stream is the same every time.
        loaded.state.directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("distilld-demo-\(UUID().uuidString.prefix(8))").path
        loaded.consumerGroup += "-\(UUID().uuidString.prefix(8))"
        let config = loaded
        let total = try JSONLReplayer(path: samplesPath, topic: config.topics.samples).records().count
        let progress = DemoProgress()
        let print = self.print
        let hooks = DistillServiceHooks(
            instance: "demo",
            onConnected: { connection in progress.connection.withLock { $0 = connection } },
            onAlert: { event in
                progress.summary.withLock { $0.alerts[event.subject, default: 0] += 1 }
                let d = event.data
                let value = d.value.map { String(format: "%.4f", $0) } ?? "n/a"
                let lo = d.interval.lower.map { String(format: "%.4f", $0) } ?? "?"
                let hi = d.interval.upper.map { String(format: "%.4f", $0) } ?? "?"
                print("ALERT \(event.type.rawValue) \(event.subject) [\(d.group?.key ?? "-")]: \(value) [\(lo), \(hi)] "
                      + "vs threshold \(d.threshold.map { "\($0)" } ?? "-") on \(d.window.name) \(d.window.startTime)–\(d.window.endTime) "
                      + "(\(d.newTeacherVersion ?? "?") vs \(d.oldTeacherVersion ?? "?")) id=\(event.id.prefix(16))")
            },
            onCalibration: { check in
                progress.summary.withLock { $0.calibration[check.status, default: 0] += 1 }
                let ece = check.ece.map { String(format: "%.4f", $0.value) } ?? "n/a"
                let t = check.fittedTemperature.map { String(format: "%.2f", $0) } ?? "n/a"
                print("CALIBRATION \(check.role) \(check.version): \(check.status) ECE=\(ece) T*=\(t) "
                      + "window \(check.window.name) samples=\(Int(check.samples ?? 0))")
            },
            onCheckpoint: { offsets in
                let processed = offsets.filter { $0.key.topic == config.topics.samples }.values.reduce(0, +)
                progress.summary.withLock { $0.processed = processed }
            })
        let service = DistillService(config: config, logger: logger, hooks: hooks)
        let group = ServiceGroup(configuration: .init(
            services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask {
                // Wait for the in-process broker, then replay the registry and the samples into it.
                var connection: KafkaConnection?
                while connection == nil {
                    try await Task.sleep(for: .milliseconds(50))
                    connection = progress.connection.withLock { $0 }
                }
                let producer = try KafkaProducer(properties: connection!.properties, logger: logger)
                try await JSONLReplayer(path: teachersPath, topic: config.topics.teachers, keyField: "version")
                    .replay(with: producer)
                print("replaying \(total) samples from \(samplesPath) into \(config.topics.samples) "
                      + "(\(connection!.bootstrapServers))")
                try await JSONLReplayer(path: samplesPath, topic: config.topics.samples).replay(with: producer) { n in
                    progress.summary.withLock { $0.samples = n }
                }
                await producer.close()
                var lastReport = ContinuousClock.now
                var doneSince: ContinuousClock.Instant?
                while true {
                    try await Task.sleep(for: .milliseconds(200))
                    let processed = progress.summary.withLock { $0.processed }
                    if ContinuousClock.now - lastReport >= .seconds(2) {
                        lastReport = ContinuousClock.now
                        let secs = Double((ContinuousClock.now - started).components.seconds) + 0.001
                        print(String(format: "progress: %lld of %d samples processed (%.0f/s), lag %lld",
                                     processed, total, Double(processed) / secs, Int64(total) - processed))
                    }
                    if processed >= Int64(total) {
                        doneSince = doneSince ?? ContinuousClock.now
                        // Idle partitions release the watermark after a few seconds; then the last windows close.
                        if !follow && ContinuousClock.now - doneSince! >= .seconds(6) { break }
                    }
                }
                await group.triggerGracefulShutdown()
            }
            try await tasks.waitForAll()
        }
        try? FileManager.default.removeItem(atPath: config.state.directory)
        var summary = progress.summary.withLock { $0 }
        let elapsed = ContinuousClock.now - started
        summary.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return summary
    }
}

/// Shared between the demo's hooks and its driver task.
final class DemoProgress: Sendable {
    let connection = Mutex<KafkaConnection?>(nil)
    let summary = Mutex(DemoRunner.Summary())
}
