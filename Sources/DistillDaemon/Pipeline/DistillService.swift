import Foundation
import KafkaClient
import Logging
import ServiceLifecycle
import Synchronization

// MARK: - DistillService

/// `distilld run`: the whole daemon as one `Service`. On graceful shutdown (SIGTERM/SIGINT) it stops fetching,
/// finishes the batch in hand, waits for every output's acknowledgement, writes the state checkpoint and commits.
public struct DistillService: Service {
    /// Stamped in state checkpoints.
    public static let version = "distilld 0.1.0"

    public let config: DistillConfig
    public let logger: Logger
    public let hooks: DistillServiceHooks
    /// Prometheus metrics; the operations endpoint serves them.
    public let metrics: DistillMetrics
    /// Liveness and readiness, for `/healthz` and `/readyz`.
    public let health: HealthState
    /// The file to re-read on SIGHUP (thresholds and rules reload without losing state); nil disables reload.
    public let configPath: String?
    /// The state directory's system calls; tests pass one that fails (a full or read-only disk) on demand.
    public let stateIO: any StateFileIO

    public init(
        config: DistillConfig, logger: Logger, hooks: DistillServiceHooks = DistillServiceHooks(),
        metrics: DistillMetrics = DistillMetrics(), health: HealthState = HealthState(), configPath: String? = nil,
        stateIO: any StateFileIO = StatePOSIXFileIO()
    ) {
        self.configPath = configPath
        self.stateIO = stateIO
        self.config = config
        self.logger = logger
        self.hooks = hooks
        self.metrics = metrics
        self.health = health
    }

    public func run() async throws {
        let connection = try KafkaConnection(config.broker, logger: logger)
        hooks.onConnected(connection)
        let runner = try PipelineRunner(
            config: config, connection: connection, hooks: hooks, metrics: metrics, health: health,
            stateIO: stateIO, logger: logger)
        let reloads = configPath.map { ReloadSignal(path: $0, logger: logger) }
        runner.reload = reloads
        do {
            try await runner.run()
        } catch {
            health.failed(reason: "\(error)")
            throw error
        }
        withExtendedLifetime(connection) {}
    }
}

/// Callbacks for embedding and tests; every one defaults to doing nothing.
public struct DistillServiceHooks: Sendable {
    /// Names this instance in CloudEvents' `source`.
    public var instance: String
    public var onConnected: @Sendable (KafkaConnection) -> Void
    public var onReady: @Sendable () -> Void
    public var onAlert: @Sendable (AlertEvent) -> Void
    /// Each calibration check as it is published.
    public var onCalibration: @Sendable (CalibrationCheckRecord) -> Void
    /// After each durable checkpoint, with the next input offset per partition it covers.
    public var onCheckpoint: @Sendable ([TopicPartition: Int64]) -> Void
    /// After partitions are assigned (and sought to the checkpoint's offsets).
    public var onAssigned: @Sendable ([TopicPartition]) -> Void
    public var onStopped: @Sendable () -> Void

    public init(
        instance: String = ProcessInfo.processInfo.hostName,
        onConnected: @escaping @Sendable (KafkaConnection) -> Void = { _ in },
        onReady: @escaping @Sendable () -> Void = {},
        onAlert: @escaping @Sendable (AlertEvent) -> Void = { _ in },
        onCalibration: @escaping @Sendable (CalibrationCheckRecord) -> Void = { _ in },
        onCheckpoint: @escaping @Sendable ([TopicPartition: Int64]) -> Void = { _ in },
        onAssigned: @escaping @Sendable ([TopicPartition]) -> Void = { _ in },
        onStopped: @escaping @Sendable () -> Void = {}
    ) {
        self.instance = instance
        self.onConnected = onConnected
        self.onReady = onReady
        self.onAlert = onAlert
        self.onCalibration = onCalibration
        self.onCheckpoint = onCheckpoint
        self.onAssigned = onAssigned
        self.onStopped = onStopped
    }
}

// MARK: - ReloadSignal

/// Turns SIGHUP into a flag the pipeline checks between batches, so a reload never lands mid-batch.
/// `@unchecked Sendable`: the dispatch source is only resumed in `init` and cancelled in `deinit`.
final class ReloadSignal: @unchecked Sendable {
    let path: String
    private let requested = ReloadFlag()
    private let source: any DispatchSourceSignal

    init(path: String, logger: Logger) {
        self.path = path
        signal(SIGHUP, SIG_IGN)  // the dispatch source receives it instead of the default (terminate)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        self.source = source
        source.setEventHandler { [requested] in requested.value.store(true, ordering: .releasing) }
        source.resume()
    }

    deinit { source.cancel() }

    /// True once per SIGHUP received.
    func take() -> Bool { requested.value.exchange(false, ordering: .acquiringAndReleasing) }
}

/// An atomic flag a signal handler closure can capture.
final class ReloadFlag: Sendable {
    let value = Atomic<Bool>(false)
}
