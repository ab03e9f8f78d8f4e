import DistillCore
import Foundation
import KafkaClient
import Logging
import ServiceLifecycle
import Synchronization

// MARK: - PipelineRunner

/// The daemon's loop: Kafka in, `DistillEngine`, Kafka out, with the commit protocol that loses and doubles nothing.
///
/// Commit protocol, every `state.interval` and on shutdown:
/// 1. wait until the broker acknowledged every output the checkpointed state derived (a failed delivery stops the
///    daemon *without* committing, so a restart recomputes and re-sends it);
/// 2. write the state checkpoint (engine state + the next input offset per partition) durably;
/// 3. only then store and commit those offsets in the consumer group.
/// A crash between 2 and 3 is safe: on start the runner seeks to the checkpoint's offsets, which are never behind
/// the committed ones, so nothing is folded in twice; alert ids are deterministic and already-emitted ids live in
/// the checkpoint, so nothing is sent twice.
///
/// The loop only takes the checkpoint (a copy-on-write snapshot and the offsets, between two batches); steps 1–3
/// run in the background (`CheckpointWriter`) while the loop goes on. One checkpoint is in flight at a time. A
/// checkpoint that cannot be written (full or read-only state directory) commits nothing; the daemon reports it
/// (log, `distilld_checkpoint_failures_total`, `/readyz`) and retries at the next interval.
final class PipelineRunner {
    let config: DistillConfig
    let logger: Logger
    let engine: DistillEngine
    let producer: KafkaProducer
    let inputs: KafkaConsumer
    let registryConsumer: PartitionReader
    let store: StateStore
    let output: DistillOutputContext
    let hooks: DistillServiceHooks
    let properties: KafkaProperties
    let metrics: DistillMetrics
    let health: HealthState
    /// Engine counters already reported to metrics (they are cumulative; metrics take deltas).
    private var reported = EngineCounters()
    /// Set when the daemon reloads its config on SIGHUP.
    var reload: ReloadSignal?
    private var lastLagUpdate = ContinuousClock.now
    private var lagQuery: Task<Void, Never>?
    /// The latest lag report per input partition and when it was taken (written by the lag task).
    private let lagReport = Locked<(lags: [TopicPartition: Int64], at: ContinuousClock.Instant?)>(([:], nil))
    /// Wall-clock time of the last sample per assigned `samples` partition, for idleness.
    private var lastData: [Int32: ContinuousClock.Instant] = [:]
    /// Assigned `samples` partitions declared idle: they do not hold the watermark back until data comes again.
    private var idle: Set<Int32> = []
    /// A partition silent this long stops holding the event-time watermark back.
    static let idleAfter: Duration = .seconds(3)
    /// Records (and events) asked of the consumer per poll; a poll that fills it means the input is backlogged.
    static let batchSize = 2048
    /// When a poll last returned a full batch.
    private var lastFullBatch: ContinuousClock.Instant?
    /// How often consumer lag is measured (metrics and idleness).
    static let lagEvery: Duration = .seconds(1)
    /// Next offset per input partition, as covered by the engine's state.
    private var positions: [TopicPartition: Int64] = [:]
    /// Offsets from the restored checkpoint: where each partition resumes.
    private var resumeAt: [TopicPartition: Int64] = [:]
    /// Outputs not yet acknowledged, per checkpoint epoch.
    private let ledger: OutputLedger
    private let writer: CheckpointWriter
    /// The checkpoint being completed in the background, and whether it has finished.
    private var inFlight: (task: Task<CheckpointOutcome, Never>, done: Locked<Bool>)?
    private var lastCheckpoint = ContinuousClock.now
    /// Checkpoints failed in a row, and when that was last logged (a failing volume is logged once a minute).
    private var failedCheckpoints = 0
    private var failureLogged: ContinuousClock.Instant?
    /// Scale-out (`scale_out.enabled`): the changelog and the merge stage.
    private var scaleOut: ScaleOutCoordinator?
    /// Scale-out: input a restored partition state already covers, per partition (records below are skipped).
    private var skipBelow: [TopicPartition: Int64] = [:]
    /// Scale-out: the `samples` partitions this instance owns.
    private var ownedSamples: Set<Int32> = []
    /// Scale-out: when this instance last processed a sample of each partition (logged when it stops owning them).
    private var lastProcessed: [Int32: Date] = [:]
    /// Scale-out: owned partitions whose state changed since it was last written to the changelog.
    private var changed: Set<Int32> = []

    init(
        config: DistillConfig, connection: KafkaConnection, hooks: DistillServiceHooks, metrics: DistillMetrics,
        health: HealthState, stateIO: any StateFileIO = StatePOSIXFileIO(), logger: Logger
    ) throws {
        self.config = config
        self.logger = logger
        self.hooks = hooks
        self.metrics = metrics
        self.health = health
        engine = try DistillEngine(config: config, role: config.scaleOut.enabled ? .worker : .single)
        properties = connection.properties
        producer = try KafkaProducer(properties: connection.properties, logger: logger)
        inputs = try KafkaConsumer(groupID: config.consumerGroup, properties: connection.properties, logger: logger)
        registryConsumer = try PartitionReader(properties: connection.properties, logger: logger)
        store = StateStore(directory: config.state.directory, io: stateIO, logger: logger)
        let ledger = OutputLedger()
        self.ledger = ledger
        writer = CheckpointWriter(
            ledger: ledger, store: store, inputs: inputs, hooks: hooks, metrics: metrics, logger: logger)
        output = DistillOutputContext(
            source: DistillOutputContext.source(instance: hooks.instance), configRevision: config.revision,
            confidenceLevel: config.statistics.confidenceLevel)
    }

    // MARK: Run

    func run() async throws {
        if config.scaleOut.enabled {
            scaleOut = try ScaleOutCoordinator(
                config: config, properties: properties, producer: producer, metrics: metrics, logger: logger,
                send: { [unowned self] record in try self.send(record) },
                publish: { [unowned self] outputs in try self.publish(outputs) },
                readBackAlerts: { [unowned self] engine in try await self.readBackAlerts(into: engine) })
            // A partition's next owner starts once what this instance sent for it (partials, progress) has landed.
            let producer = self.producer
            inputs.beforeRevoke { _ in _ = producer.flushBlocking(timeout: .seconds(10)) }
            logger.info("scale-out: partitions restore from \(config.topics.changelog), not from the state directory")
        } else {
            try restore()
        }
        if !config.scaleOut.enabled { try await readBackAlerts(into: engine) }
        health.stateRestored()
        try await catchUpRegistry()
        try await scaleOut?.start(engine: engine)
        var topics = [config.topics.samples]
        if let labels = config.topics.labels { topics.append(labels) }
        inputs.setStartOffsets(resumeAt)
        try inputs.subscribe(topics)
        hooks.onReady()
        logger.info("distilld running", metadata: [
            "topics": "\(topics.joined(separator: ","))", "group": "\(config.consumerGroup)",
            "state": "\(config.state.directory)"])
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try await step()
        }
        health.shutdownBegan()
        if scaleOut != nil {
            logger.info("input stopped", metadata: ["last_processed": "\(lastProcessedText(Array(ownedSamples)))"])
        }
        lagQuery?.cancel()
        await lagQuery?.value
        try await logger.shutdownStep("final checkpoint") { try await finalCheckpoint() }
        if let scaleOut { await logger.shutdownStep("scale-out consumers close") { await scaleOut.close() } }
        await logger.shutdownStep("input consumer close") { await inputs.close() }
        await logger.shutdownStep("registry reader close") { await registryConsumer.close() }
        await logger.shutdownStep("producer close") { await producer.close() }
        // The engine's counters (over the state's whole life), once: `distilld bench` reads its child daemon's here.
        let done = engine.counters
        logger.info("distilld stopped", metadata: [
            "samples_in": "\(done.samplesIn)", "samples_ingested": "\(done.samplesIngested)",
            "dead_letters": "\(done.deadLetters.values.reduce(0, +))", "late_samples": "\(done.lateSamples)",
            "duplicate_samples": "\(done.duplicateSamples)", "labels_joined": "\(done.labelsJoined)",
            "windows_closed": "\(done.windowsClosed)", "alerts_emitted": "\(done.alertsEmitted)",
            "student_updates": "\(done.studentUpdates)"])
        hooks.onStopped()
    }

    /// One poll of the registry and of the inputs, then a checkpoint when one is due.
    func step() async throws {
        if let reload, reload.take() { applyReload(from: reload.path) }
        for message in try await registryConsumer.poll(maxMessages: 256, timeout: .zero).messages {
            try publish(engine.handleTeacher(message.value, key: message.key, at: position(of: message)))
            try scaleOut?.teacher(message)
        }
        let batch = try await inputs.poll(maxMessages: Self.batchSize, timeout: .milliseconds(100))
        if batch.events.count >= Self.batchSize { lastFullBatch = ContinuousClock.now }
        let revokedLater = scaleOut == nil ? [] : Self.revokedLater(batch.events)
        for (index, event) in batch.events.enumerated() {
            switch event {
            case .assigned(let partitions):
                let samples = partitions.filter { $0.topic == config.topics.samples }.map(\.partition)
                logger.info("partitions assigned", metadata: [
                    "partitions": "\(partitions.count)", "samples": "\(samples.map(String.init).joined(separator: ","))"])
                if let scaleOut { try await takeOver(samples, from: scaleOut) }
                engine.partitionsAssigned(samples)
                for p in samples { lastData[p] = ContinuousClock.now }
                health.partitionsAssigned()
                hooks.onAssigned(partitions)
            case .revoked(let partitions), .lost(let partitions):
                let samples = partitions.filter { $0.topic == config.topics.samples }.map(\.partition)
                logger.info("partitions revoked", metadata: [
                    "partitions": "\(partitions.count)", "samples": "\(samples.map(String.init).joined(separator: ","))",
                    "last_processed": "\(lastProcessedText(samples))"])
                for tp in partitions { metrics.removeLag(topic: tp.topic, partition: tp.partition) }
                for p in samples { lastData[p] = nil; idle.remove(p) }
                if scaleOut != nil {
                    // The next owner restores these from the changelog; nothing of them stays here.
                    for tp in partitions { positions[tp] = nil; skipBelow[tp] = nil }
                    ownedSamples.subtract(samples)
                    for p in samples { lastProcessed[p] = nil }
                }
                try publish(engine.partitionsRevoked(samples))
            case .error(let error):
                logger.warning("consumer: \(error)")
            case .message(let message):
                if let covered = skipBelow[message.topicPartition], message.offset < covered { continue }
                // Fetched before a revocation later in this batch: the partition is someone else's now (its next
                // owner reprocesses from the changelog), so nothing more of it is processed here.
                if !revokedLater.isEmpty && revokedLater[index].contains(message.topicPartition) { continue }
                if scaleOut != nil {
                    changed.insert(message.partition)  // labels share the partition number
                    if message.topic == config.topics.samples { lastProcessed[message.partition] = Date() }
                }
                if message.topic == config.topics.samples && idle.contains(message.partition) { resumeIdle() }
                let at = position(of: message)
                let outputs = message.topic == config.topics.samples
                    ? engine.handleSample(message.value, key: message.key, at: at)
                    : engine.handleLabel(message.value, key: message.key, at: at)
                try publish(outputs)
                positions[message.topicPartition] = message.offset + 1
                if message.topic == config.topics.samples { lastData[message.partition] = ContinuousClock.now }
            }
        }
        // A partition assigned again in this process (after a lost assignment, say) resumes where the in-memory
        // state stops, not at the group's committed offset, which may lag behind it.
        if !batch.events.isEmpty { inputs.setStartOffsets(positions) }
        let report = lagReport.withLock { $0 }
        // Behind on input (a full batch in the last `idleAfter`), quiet is no evidence of idleness at all: librdkafka
        // stops fetching while its queue is full of other partitions' records, so a partition can go unread, and its
        // cached high watermark stale, for seconds while its broker holds data (the overload test's late samples).
        let backlogged = lastFullBatch.map { ContinuousClock.now - $0 < Self.idleAfter } ?? false
        for (p, seen) in lastData where !backlogged && ContinuousClock.now - seen >= Self.idleAfter {
            // Quiet is not idle while the partition still has a backlog: fetches may be serving other partitions
            // first (a restart with a large backlog), and releasing the watermark would make its samples late. Idle
            // needs a lag report taken after the partition went quiet that says it has nothing left.
            let tp = TopicPartition(config.topics.samples, p)
            guard let at = report.at, at > seen, report.lags[tp] == 0 else { continue }
            if let high = inputs.cachedHighWatermark(tp), let position = positions[tp], position < high { continue }
            lastData[p] = nil  // re-armed by its next message
            idle.insert(p)
            changed.insert(p)  // a worker seals an idle partition's panes
            try publish(engine.partitionIdle(p))
        }
        reportCounters()
        if let scaleOut {
            try await scaleOut.step()
            try await scaleOut.adoptAverages(into: engine)
            if ContinuousClock.now - lastCheckpoint >= .milliseconds(config.state.intervalMillis) {
                try await scaleOutCheckpoint(scaleOut)
            }
        } else {
            if let (_, done) = inFlight, done.withLock({ $0 }) { try await settleInFlight(final: false) }
            if inFlight == nil && ContinuousClock.now - lastCheckpoint >= .milliseconds(config.state.intervalMillis) {
                startCheckpoint()
            }
        }
        if ContinuousClock.now - lastLagUpdate >= Self.lagEvery {
            lastLagUpdate = ContinuousClock.now
            // One query at a time, off the loop: a partition without a cached watermark costs a round trip.
            let previous = lagQuery
            let inputs = self.inputs, metrics = self.metrics, lagReport = self.lagReport
            lagQuery = Task {
                await previous?.value
                let asked = ContinuousClock.now
                guard let lags = try? await inputs.lag(timeout: .seconds(2)) else { return }
                for (tp, lag) in lags { metrics.setLag(topic: tp.topic, partition: tp.partition, lag: lag.lag) }
                lagReport.withLock { $0 = (lags.mapValues(\.lag), asked) }
            }
        }
    }

    /// Data again on an idle partition: every idle partition holds the watermark back again (at its last event
    /// time) until it delivers or is found idle again. Input resumed after a pause reaches the partitions in turn;
    /// otherwise the first one read would move the watermark past the others' waiting samples and make them late.
    private func resumeIdle() {
        engine.partitionsAssigned(Array(idle))
        for p in idle { lastData[p] = ContinuousClock.now }
        idle.removeAll()
    }

    /// Re-reads the config file; thresholds and rules apply at once, anything else is refused and logged.
    private func applyReload(from path: String) {
        do {
            let new = try DistillConfig.load(path: path)
            try engine.reload(new)
            logger.notice("config reloaded", metadata: ["file": "\(path)", "revision": "\(new.revision)"])
        } catch {
            logger.error("config reload refused: \(error)")
        }
    }

    /// Passes the engine's cumulative counters to the metrics as deltas.
    private func reportCounters() {
        let now = engine.counters
        metrics.samplesIngested(now.samplesIngested - reported.samplesIngested)
        metrics.samplesDuplicate(now.duplicateSamples - reported.duplicateSamples)
        for _ in 0..<max(0, now.lateSamples - reported.lateSamples) { metrics.lateSample(dropped: false) }
        for (reason, count) in now.deadLetters {
            for _ in 0..<max(0, count - (reported.deadLetters[reason] ?? 0)) { metrics.deadLetter(reason: reason) }
        }
        metrics.studentUpdated(now.studentUpdates - reported.studentUpdates)
        reported = now
    }

    private func position(of m: KafkaMessage) -> InputPosition {
        InputPosition(topic: m.topic, partition: m.partition, offset: m.offset)
    }

    // MARK: Restore

    private func restore() throws {
        let policy: OnCorrupt = config.state.onCorrupt == .reset ? .reset : .fail
        let result = try store.loadApplying(policy)
        guard let checkpoint = result.checkpoint else {
            logger.info("no state checkpoint: starting fresh", metadata: ["dir": "\(config.state.directory)"])
            return
        }
        if case .recovered(_, let path, let skipped) = result {
            logger.warning("latest checkpoint unusable (\(skipped)); restored the previous one from \(path)")
        }
        do {
            if let bytes = checkpoint.section(named: "engine") { try engine.restore(bytes) }
        } catch {
            guard config.state.onCorrupt == .reset else {
                throw DaemonError.state("cannot restore the checkpoint's engine state: \(error). Set "
                                        + "state.on_corrupt: reset to start fresh, or restore the previous config")
            }
            logger.warning("checkpoint engine state not restorable (\(error)); starting fresh (state.on_corrupt: reset)")
            return
        }
        for (tp, offset) in checkpoint.offsets {
            resumeAt[TopicPartition(tp.topic, tp.partition)] = offset
            positions[TopicPartition(tp.topic, tp.partition)] = offset
        }
        logger.info("state restored", metadata: [
            "sequence": "\(checkpoint.sequence)", "partitions": "\(checkpoint.offsets.count)"])
    }

    /// Reads the tail of the alerts topic so alerts published after the last checkpoint are not sent again.
    func readBackAlerts(into engine: DistillEngine) async throws {
        let partitions = Int32(try await registryConsumer.partitionCount(of: config.topics.alerts))
        var starts: [TopicPartition: Int64] = [:]
        for p in 0..<partitions { starts[TopicPartition(config.topics.alerts, p)] = KafkaOffset.tail(Self.alertTail) }
        var ids: [String] = []
        let complete = try await TopicReader.readToEnd(properties: properties, logger: logger, starts) { m in
            if let object = try? JSONSerialization.jsonObject(with: Data(m.value)) as? [String: Any],
               let id = object["id"] as? String { ids.append(id) }
        }
        if !complete {
            throw DaemonError.state("could not read back \(config.topics.alerts) within 30 s; refusing to start, "
                                    + "since alerts published before a crash might be sent twice")
        }
        engine.rememberPublishedAlerts(ids)
        logger.info("alerts read back", metadata: ["ids": "\(ids.count)"])
    }

    /// How many alerts per partition are read back at start: far more than can be published between checkpoints.
    static let alertTail: Int64 = 20_000

    /// Reads the whole registry topic before the first sample, so group keys use the right teacher pair.
    private func catchUpRegistry() async throws {
        let tp = TopicPartition(config.topics.teachers, 0)
        try await registryConsumer.assign([tp: KafkaOffset.beginning])
        let deadline = ContinuousClock.now + .seconds(30)
        var high: Int64 = -1
        var read: Int64 = 0
        while ContinuousClock.now < deadline {
            if high < 0 { high = (try? await registryConsumer.highWatermarks([tp], timeout: .seconds(2)))?[tp] ?? -1 }
            let batch = try await registryConsumer.poll(maxMessages: 1024, timeout: .milliseconds(200))
            for message in batch.messages {
                try publish(engine.handleTeacher(message.value, key: message.key, at: position(of: message)))
                read = message.offset + 1
            }
            if high >= 0 && read >= high { break }
        }
        logger.info("teacher registry read", metadata: ["records": "\(read)"])
    }

    // MARK: Outputs

    func publish(_ outputs: [EngineOutput]) throws {
        for item in outputs {
            let record: ProducerRecord
            switch item {
            case .decision(let decision):
                guard let event = AlertEvent(decision: decision, context: output) else { continue }
                record = try event.producerRecord(topic: config.topics.alerts)
                metrics.alertEmitted(type: event.type.rawValue)
                hooks.onAlert(event)
            case .windowClosed(let window, let reports):
                for report in reports {
                    let snapshot = WindowSnapshot(report: report, context: output, firstSequence: window.firstSequence)
                    try send(try snapshot.producerRecord(topic: config.topics.windows))
                }
                continue
            case .calibration(let check):
                let checkRecord = CalibrationCheckRecord(check, context: output)
                record = try checkRecord.producerRecord(topic: config.topics.calibration)
                hooks.onCalibration(checkRecord)
            case .deadLetter(let rejected):
                record = DeadLetterRecord(
                    sourceTopic: rejected.source.topic, sourcePartition: rejected.source.partition,
                    sourceOffset: rejected.source.offset, key: rejected.key, value: rejected.bytes,
                    reason: DeadLetterReason(code: rejected.reason, message: rejected.message,
                                             field: rejected.field ?? "$"))
                    .producerRecord(topic: config.topics.deadLetter)
            case .partial(let partial):
                guard let scaleOut else { continue }
                for record in try scaleOut.records(for: partial) { try send(record) }
                continue
            case .studentCheckpoint(let checkpoint):
                record = try StudentCheckpointRecord(
                    checkpoint: checkpoint, studentVersion: DistillEngine.onlineStudentVersion, context: output)
                    .producerRecord(topic: config.topics.students)
            }
            try send(record)
            metrics.outputRecords(topic: record.topic)
        }
    }

    func send(_ record: ProducerRecord) throws {
        let ledger = self.ledger
        let epoch = ledger.sending()
        while true {
            do {
                try producer.send(record) { result in
                    switch result {
                    case .success: ledger.settled(epoch: epoch, error: nil)
                    case .failure(let error): ledger.settled(epoch: epoch, error: error)
                    }
                }
                return
            } catch where error.code == .queueFull {
                // The local queue drains as the broker acknowledges; waiting here is the backpressure.
                Thread.sleep(forTimeInterval: 0.002)
            } catch {
                ledger.settled(epoch: epoch, error: error)
                throw error
            }
        }
    }

    // MARK: Checkpoint

    /// Takes a checkpoint between two batches and completes it in the background.
    private func startCheckpoint() {
        let job = CheckpointJob(
            epoch: ledger.seal(), engine: EngineStateHandoff(engine.state()), offsets: positions,
            configRevision: config.revision)
        lastCheckpoint = ContinuousClock.now
        let done = Locked(false)
        let writer = self.writer
        let task = Task {
            let outcome = await writer.complete(job)
            done.withLock { $0 = true }
            return outcome
        }
        inFlight = (task, done)
    }

    /// On shutdown: lets the checkpoint in flight finish, then writes one covering everything read.
    private func finalCheckpoint() async throws {
        if let scaleOut { return try await scaleOutCheckpoint(scaleOut, final: true) }
        try await settleInFlight(final: false)
        startCheckpoint()
        try await settleInFlight(final: true)
    }

    // MARK: Scale-out checkpoint

    /// For each event of a batch, the partitions revoked (or lost) after it and not assigned again before that.
    static func revokedLater(_ events: [ConsumerEvent]) -> [Set<TopicPartition>] {
        var out = Array(repeating: Set<TopicPartition>(), count: events.count)
        var later = Set<TopicPartition>()
        for i in events.indices.reversed() {
            switch events[i] {
            case .revoked(let tps), .lost(let tps): later.formUnion(tps)
            case .assigned(let tps): later.subtract(tps)
            default: break
            }
            out[i] = later
        }
        return out
    }

    /// `partition=unix ms` of the last sample processed per partition, for the log (ownership handovers are checked
    /// against it).
    private func lastProcessedText(_ partitions: [Int32]) -> String {
        partitions.sorted().compactMap { p in
            lastProcessed[p].map { "\(p)=\(Int64(($0.timeIntervalSince1970 * 1000).rounded()))" }
        }.joined(separator: ",")
    }

    /// Restores newly assigned partitions from the changelog: their panes, clocks and buffers, and the input offsets
    /// their state covers (input below them is skipped: it is already in the state).
    private func takeOver(_ samples: [Int32], from scaleOut: ScaleOutCoordinator) async throws {
        for p in samples where !ownedSamples.contains(p) {
            ownedSamples.insert(p)
            guard let restored = try await scaleOut.restore(partition: p) else { continue }
            engine.restorePartition(restored.state)
            if let next = restored.samplesNext {
                let tp = TopicPartition(config.topics.samples, p)
                skipBelow[tp] = next
                positions[tp] = max(positions[tp] ?? next, next)
            }
            if let labels = config.topics.labels, let next = restored.labelsNext {
                let tp = TopicPartition(labels, p)
                skipBelow[tp] = next
                positions[tp] = max(positions[tp] ?? next, next)
            }
            logger.info("partition restored from the changelog", metadata: [
                "partition": "\(p)", "samples_next": "\(restored.samplesNext ?? -1)",
                "open_partials": "\(restored.state.open.count)"])
        }
    }

    /// The scale-out commit protocol, in the loop: outputs so far acknowledged → owned partitions' state and progress
    /// (and the merge state) acknowledged → input offsets committed.
    private func scaleOutCheckpoint(_ scaleOut: ScaleOutCoordinator, final: Bool = false) async throws {
        let started = ContinuousClock.now
        lastCheckpoint = started
        let covered = positions
        let records = try scaleOut.checkpointRecords(engine: engine, owned: Array(ownedSamples), changed: changed,
                                                     positions: covered)
            + (scaleOut.mergeCheckpointRecords(final: final) ?? [])
        changed.removeAll()
        try await acknowledged(through: ledger.seal())
        for record in records { try send(record) }
        try await acknowledged(through: ledger.seal())
        hooks.onCheckpoint(covered)
        _ = await writer.commit(covered)
        metrics.checkpointWritten(duration: ContinuousClock.now - started)
        health.checkpointWritten()
    }

    /// Waits until every output up to `epoch` is acknowledged; a failed one stops the daemon without committing.
    private func acknowledged(through epoch: Int) async throws {
        while true {
            switch ledger.status(through: epoch) {
            case .acknowledged: return
            case .failed(let error):
                metrics.deliveryFailed()
                throw DaemonError.delivery("an output could not be delivered (\(error)); stopping without "
                                           + "committing, so a restart recomputes and re-sends it")
            case .pending: try await Task.sleep(for: .milliseconds(1))
            }
        }
    }

    /// Waits for the checkpoint in flight, if any, and reports it.
    private func settleInFlight(final: Bool) async throws {
        guard let (task, _) = inFlight else { return }
        inFlight = nil
        try settle(await task.value, final: final)
    }

    /// Reports a finished checkpoint. A delivery failure stops the daemon; a write failure stops it only at
    /// shutdown (there is no later checkpoint to retry with).
    private func settle(_ outcome: CheckpointOutcome, final: Bool) throws {
        switch outcome {
        case .written(let receipt):
            metrics.checkpointWritten(duration: receipt.duration)
            health.checkpointWritten()
            if failedCheckpoints > 0 {
                logger.notice("checkpoint written again; offsets are committed again",
                              metadata: ["failed_attempts": "\(failedCheckpoints)"])
                failedCheckpoints = 0
                failureLogged = nil
            }
        case .deliveryFailed(let failure):
            metrics.deliveryFailed()
            throw DaemonError.delivery("an output could not be delivered (\(failure)); stopping without "
                                       + "committing, so a restart recomputes and re-sends it")
        case .writeFailed(let why):
            metrics.checkpointFailed()
            health.checkpointFailing(reason: why)
            if final {
                throw DaemonError.state("the final checkpoint could not be written (\(why)); no offsets were "
                                        + "committed past the last durable checkpoint, which a restart resumes from")
            }
            failedCheckpoints += 1
            if failureLogged.map({ ContinuousClock.now - $0 >= .seconds(60) }) ?? true {
                failureLogged = ContinuousClock.now
                logger.error("checkpoint not written; no offsets committed, retrying every state.interval", metadata: [
                    "error": "\(why)", "failed_attempts": "\(failedCheckpoints)",
                    "interval_ms": "\(config.state.intervalMillis)"])
            }
        }
    }
}

// MARK: - Helpers

/// A value behind a lock, shareable with escaping closures.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

/// Errors that stop the daemon, with what to do.
public enum DaemonError: Error, CustomStringConvertible {
    case state(String)
    case delivery(String)

    public var description: String {
        switch self {
        case .state(let why): "state: \(why)"
        case .delivery(let why): "delivery: \(why)"
        }
    }
}
