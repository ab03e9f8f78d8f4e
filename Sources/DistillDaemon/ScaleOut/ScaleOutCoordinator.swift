import DistillCore
import Foundation
import KafkaClient
import Logging

// MARK: - ScaleOutCoordinator

/// The scale-out side of an instance (`scale_out.enabled`): the changelog of the partitions it owns, and the merge
/// stage while it holds the merge lease.
///
/// - **Stage 1, every instance.** The runner's engine is a `worker`. Its sealed panes go to `topics.partials` (to the
///   partition `source partition % partials partitions`, so one source partition's records stay in order), and at
///   each checkpoint every owned partition's state goes to `topics.changelog` and its progress (event time, idle) to
///   `topics.partials`, after every output before it is acknowledged; only then are the input offsets committed. A
///   partition's next owner restores the newest complete state from the changelog and skips input it covers.
/// - **Stage 2, one instance.** The merge lease is partition 0 of `topics.merge`, held through the consumer group
///   `<consumer_group>.merge`: the group protocol gives it to exactly one live member. The holder restores the last
///   merge state from that topic, reads back the alerts already published, reads the registry, and folds partials
///   from where the state stops: a `merger` engine closes windows on the global watermark and emits the alerts,
///   snapshots and calibration checks. It checkpoints its state to the merge topic with the instance's checkpoint.
final class ScaleOutCoordinator {
    let config: DistillConfig
    let properties: KafkaProperties
    let logger: Logger
    let metrics: DistillMetrics
    /// Sends one record through the runner's producer, counted in its output ledger.
    private let send: (ProducerRecord) throws -> Void
    /// Publishes merger outputs the way the runner publishes its own.
    private let publish: ([EngineOutput]) throws -> Void
    private let readBackAlerts: (DistillEngine) async throws -> Void
    private let writer = UInt64.random(in: 1...UInt64.max)
    private var sequence: UInt64 = 0
    private(set) var partialsPartitions: Int32 = 0
    private(set) var changelogPartitions: Int32 = 0
    private(set) var samplesPartitions: Int32 = 0
    private let lease: KafkaConsumer
    /// Reads the student averages from the merge topic (every instance adopts them).
    private let averages: PartitionReader
    private var averageChunks = ChunkAssembler()
    private var merger: Merger?
    private var lastMergeState = ContinuousClock.now
    /// Partials refused by the merger so far (reported as a metric delta).
    private(set) var conflictingPartials = 0

    /// The merge stage while this instance holds the lease.
    private struct Merger {
        let engine: DistillEngine
        let partials: PartitionReader
        var assembler = ChunkAssembler()
        var next: [Int32: Int64]
        var rounds: AveragingRoundPacer
    }

    init(config: DistillConfig, properties: KafkaProperties, producer: KafkaProducer, metrics: DistillMetrics,
         logger: Logger,
         send: @escaping (ProducerRecord) throws -> Void, publish: @escaping ([EngineOutput]) throws -> Void,
         readBackAlerts: @escaping (DistillEngine) async throws -> Void) throws {
        self.config = config
        self.properties = properties
        self.logger = logger
        self.metrics = metrics
        self.send = send
        self.publish = publish
        self.readBackAlerts = readBackAlerts
        // Short fetch waits here too: the merger's end-offset queries go through this consumer's connection and wait
        // behind its fetch in flight.
        lease = try KafkaConsumer(groupID: config.consumerGroup + ".merge",
                                  properties: properties.withDefaults(Self.internalFetch), logger: logger)
        // The next merger reads back the alerts already published: let what this one sent land before it can start.
        lease.beforeRevoke { _ in _ = producer.flushBlocking(timeout: .seconds(10)) }
        averages = try PartitionReader(properties: properties.withDefaults(Self.internalFetch), logger: logger)
    }

    /// Learns the partition counts, joins the merge-lease group and starts the student from the newest average.
    func start(engine: DistillEngine) async throws {
        let topics = config.topics
        samplesPartitions = Int32(try await lease.partitionCount(of: topics.samples))
        partialsPartitions = Int32(try await lease.partitionCount(of: topics.partials))
        changelogPartitions = Int32(try await lease.partitionCount(of: topics.changelog))
        let merge = try await lease.partitionCount(of: topics.merge)
        if let labels = topics.labels {
            let count = Int32(try await lease.partitionCount(of: labels))
            guard count == samplesPartitions else {
                throw DaemonError.state("scale_out needs \(labels) partitioned like \(topics.samples) (a label must "
                                        + "reach the instance owning its sample): \(count) vs \(samplesPartitions) "
                                        + "partitions")
            }
        }
        if merge != 1 {
            logger.warning("\(topics.merge) has \(merge) partitions; only partition 0 is the merge lease")
        }
        lease.setStartOffsets([TopicPartition(topics.merge, 0): KafkaOffset.end])
        try lease.subscribe([topics.merge])
        if config.student.enabled {
            // The averages reader goes on from where the start read stopped, not over the same tail again.
            let next = try await startFromNewestAverage(engine)
            try await averages.assign([TopicPartition(topics.merge, 0): next ?? KafkaOffset.tail(Self.mergeTail)])
        }
        logger.info("scale-out: stage 1 on owned partitions; merge lease requested", metadata: [
            "samples_partitions": "\(samplesPartitions)", "partials_partitions": "\(partialsPartitions)"])
    }

    private func token() -> ScaleOutToken {
        sequence += 1
        return ScaleOutToken(writer: writer, sequence: sequence)
    }

    private func records(_ value: some Encodable, kind: ScaleOutRecord.Kind, partition: Int32, topic: String,
                         topicPartition: Int32, key: String) throws -> [ProducerRecord] {
        let bytes = try StateBinaryEncoder().encode(value)
        return ScaleOutRecord.chunks(of: bytes, kind: kind, partition: partition, token: token()).map {
            ProducerRecord(topic: topic, partition: topicPartition, key: Array(key.utf8), value: $0.bytes)
        }
    }

    // MARK: Stage 1

    /// The records of a sealed partial, for the partials topic.
    func records(for partial: WindowSetPartial) throws -> [ProducerRecord] {
        try records(partial, kind: .sealed, partition: partial.partition, topic: config.topics.partials,
                    topicPartition: partial.partition % max(1, partialsPartitions),
                    key: "sealed/\(partial.partition)/\(partial.window)/\(partial.pane)")
    }

    /// The state and progress records of the partitions this instance owns, at this instant. A partition's state is
    /// written only when it changed since the last write (`changed`): the newest one in the changelog still holds.
    func checkpointRecords(engine: DistillEngine, owned: [Int32], changed: Set<Int32>,
                           positions: [TopicPartition: Int64]) throws -> [ProducerRecord] {
        var out: [ProducerRecord] = []
        for p in owned.sorted() {
            let samplesNext = positions[TopicPartition(config.topics.samples, p)]
            let labelsNext = config.topics.labels.flatMap { positions[TopicPartition($0, p)] }
            if changed.contains(p) {
                let published = PublishedPartitionState(
                    state: engine.partitionState(p, samplesTopic: config.topics.samples), samplesNext: samplesNext,
                    labelsNext: labelsNext)
                out += try records(published, kind: .state, partition: p, topic: config.topics.changelog,
                                   topicPartition: p % max(1, changelogPartitions), key: "state/\(p)")
            }
            let progress = engine.progress(of: p, samplesNext: samplesNext, labelsNext: labelsNext,
                                           stateToken: "\(sequence)")
            out += try records(progress, kind: .progress, partition: p, topic: config.topics.partials,
                               topicPartition: p % max(1, partialsPartitions), key: "progress/\(p)")
        }
        if let share = engine.studentShare(writer: writer) {
            out += try records(share, kind: .student, partition: -1, topic: config.topics.partials,
                               topicPartition: Int32(truncatingIfNeeded: writer % UInt64(max(1, partialsPartitions))),
                               key: "student/\(String(writer, radix: 16))")
        }
        return out
    }

    /// An instance that joins starts from the newest average, not from the initial weights: its shares are then
    /// progress over what the other instances learned, not a second copy of it. The newest average is a published
    /// one or, after a quiet spell without rounds, the one the last merge state holds; both are near the topic's end.
    /// Returns the offset after the last record read, when the read reached the end.
    private func startFromNewestAverage(_ engine: DistillEngine) async throws -> Int64? {
        var averageChunks = ChunkAssembler(), stateChunks = ChunkAssembler()
        var newest: StudentAverage?
        var lastState: [UInt8]?  // decoded once, at the end: a merge state can be large
        var next: Int64?
        let start = [TopicPartition(config.topics.merge, 0): KafkaOffset.tail(Self.mergeTail)]
        let complete = try await readToEnd(start) { m in
            next = m.offset + 1
            if let average = decodeAverage(m, &averageChunks) {
                if average.round > (newest?.round ?? 0) { newest = average }
            } else if let record = ScaleOutRecord(bytes: m.value), record.kind == .merge,
                      let bytes = stateChunks.add(record) {
                lastState = bytes
            }
        }
        if !complete {
            logger.warning("\(config.topics.merge): not read to its end within 30 s; the student starts from the newest average found so far")
        }
        if let lastState, let state = try? StateBinaryDecoder().decode(PublishedMergeState.self, from: lastState),
           let global = state.state.student.global, state.state.student.round > (newest?.round ?? 0) {
            let book = state.state.student
            newest = StudentAverage(round: book.round, trained: global.trained, ema: global.ema, samples: 0,
                                    contributors: [:], samplesTotal: book.samplesTotal)
        }
        if let newest { engine.adoptAverage(newest, writer: writer) }
        return complete ? next : nil
    }

    /// How many records from the merge topic's end an instance reads for the newest average: at most one merge state
    /// (a few chunks) separates two averages, and a merge state is written every few seconds.
    static let mergeTail: Int64 = 1024

    /// A student average once its last chunk has arrived; nil for other records (an undecodable one is logged).
    private func decodeAverage(_ message: KafkaMessage, _ assembler: inout ChunkAssembler) -> StudentAverage? {
        guard let record = ScaleOutRecord(bytes: message.value), record.kind == .average,
              let bytes = assembler.add(record) else { return nil }
        do {
            return try StateBinaryDecoder().decode(StudentAverage.self, from: bytes)
        } catch {
            logger.error("merge topic: undecodable student average at offset \(message.offset): \(error)")
            return nil
        }
    }

    /// Adopts the newest student average the merger published, if there is one since the last call.
    func adoptAverages(into engine: DistillEngine) async throws {
        guard config.student.enabled else { return }
        var newest: StudentAverage?
        for message in try await averages.poll(maxMessages: 256, timeout: .zero).messages {
            guard let average = decodeAverage(message, &averageChunks) else { continue }
            if average.round > (newest?.round ?? 0) { newest = average }
        }
        if let newest { engine.adoptAverage(newest, writer: writer) }
    }

    /// The newest complete state of a partition in the changelog (the one covering the most input), or nil.
    func restore(partition p: Int32) async throws -> PublishedPartitionState? {
        var assembler = ChunkAssembler()
        var best: PublishedPartitionState?
        var undecodable = 0
        let tp = TopicPartition(config.topics.changelog, p % max(1, changelogPartitions))
        let complete = try await readToEnd([tp: KafkaOffset.beginning]) { m in
            guard let record = ScaleOutRecord(bytes: m.value), record.kind == .state, record.partition == p,
                  let bytes = assembler.add(record) else { return }
            guard let state = try? StateBinaryDecoder().decode(PublishedPartitionState.self, from: bytes) else {
                undecodable += 1
                return
            }
            if (state.samplesNext ?? -1) >= (best?.samplesNext ?? -1) { best = state }
        }
        if !complete {
            throw DaemonError.state("could not read \(config.topics.changelog) to its end within 30 s to restore "
                                    + "partition \(p)")
        }
        if undecodable > 0 { logger.warning("changelog: \(undecodable) undecodable state record(s) for partition \(p)") }
        return best
    }

    // MARK: Stage 2

    /// Whether this instance holds the merge lease.
    var isMerging: Bool { merger != nil }

    /// A registry record read by the instance: the merger's registry follows it too.
    func teacher(_ message: KafkaMessage) throws {
        guard let merger else { return }
        try publish(merger.engine.handleTeacher(message.value, key: message.key, at: InputPosition(
            topic: message.topic, partition: message.partition, offset: message.offset)))
    }

    /// Serves the lease, and while it is held folds the partials that have arrived.
    func step() async throws {
        // The lease consumer reads the merge topic from its end and its records are dropped: the merger reads what it
        // needs with its own reader. (Pausing the partition instead made librdkafka 2.0.2 hang in close.)
        for event in try await lease.poll(maxMessages: 256, timeout: .zero).events {
            switch event {
            case .assigned(let partitions) where partitions.contains(TopicPartition(config.topics.merge, 0)):
                try await becomeMerger()
            case .revoked(let partitions), .lost(let partitions):
                if partitions.contains(TopicPartition(config.topics.merge, 0)) { await stopMerging("lease revoked") }
            case .error(let error):
                logger.warning("merge lease: \(error)")
            default:
                break
            }
        }
        guard var m = merger else { return }
        var outputs: [EngineOutput] = []
        let messages = try await m.partials.poll(maxMessages: 1024, timeout: .zero).messages
        // Progress in this batch may report partitions idle: their end offsets are needed before it is folded.
        var progress = false, reportedIdle: Set<Int32> = []
        for message in messages {
            guard let record = ScaleOutRecord(bytes: message.value), record.kind == .progress else { continue }
            progress = true
            let decoded = record.count == 1
                ? try? StateBinaryDecoder().decode(PartitionProgress.self, from: record.chunk) : nil
            if decoded?.holds != true { reportedIdle.insert(record.partition) }
        }
        if progress { await observeIdleEnds(m.engine, reportedIdle: reportedIdle) }
        for message in messages {
            m.next[message.partition] = message.offset + 1
            guard let record = ScaleOutRecord(bytes: message.value) else {
                logger.warning("partials: not a scale-out record", metadata: [
                    "at": "\(message.partition):\(message.offset)"])
                continue
            }
            guard [.sealed, .progress, .student].contains(record.kind), let bytes = m.assembler.add(record) else {
                continue
            }
            do {
                switch record.kind {
                case .sealed:
                    outputs += m.engine.handlePartial(try StateBinaryDecoder().decode(WindowSetPartial.self, from: bytes))
                case .progress:
                    outputs += m.engine.handleProgress(
                        try StateBinaryDecoder().decode(PartitionProgress.self, from: bytes))
                default:
                    let share = try StateBinaryDecoder().decode(StudentShare.self, from: bytes)
                    m.engine.handleShare(share)
                    m.rounds.shareArrived(from: share.writer, at: .now)
                }
            } catch {
                logger.error("partials: undecodable record", metadata: [
                    "kind": "\(record.kind)", "at": "\(message.partition):\(message.offset)", "error": "\(error)"])
            }
        }
        merger = m
        metrics.partialsConflicting(m.engine.conflictingPartials - conflictingPartials)
        conflictingPartials = m.engine.conflictingPartials
        try publish(outputs)
    }

    /// Before progress is folded: the end offsets of the partitions reported idle (so far, or in the batch about to
    /// be folded), so that one whose input resumed but whose owner has not reported it yet keeps holding the global
    /// watermark. Queried after the batch was fetched, they are at least as new as the progress in it. When the
    /// broker cannot answer, those partitions hold (windows wait rather than close without a partition's data).
    private func observeIdleEnds(_ engine: DistillEngine, reportedIdle: Set<Int32>) async {
        let idle = Array(reportedIdle.union(engine.idlePartitions)).sorted()
        guard !idle.isEmpty else { return }
        let samples = config.topics.samples
        do {
            let ends = try await lease.highWatermarks(idle.map { TopicPartition(samples, $0) }, timeout: .seconds(5))
            engine.observeSamplesEnds(Dictionary(uniqueKeysWithValues: ends.map { ($0.key.partition, $0.value) }))
        } catch {
            logger.warning("merge: idle \(samples) partitions' end offsets unknown; they hold the watermark",
                           metadata: ["error": "\(error)"])
            engine.observeSamplesEnds(Dictionary(uniqueKeysWithValues: idle.map { ($0, Int64.max) }))
        }
    }

    /// The merger's records at this checkpoint (nil when not merging): a student average when shares are waiting, and
    /// the merge state when `final` or `mergeStateEvery` has passed since the last one. The state holds every global
    /// pane an open window needs, so it is large; writing it less often than the instance checkpoints keeps the merge
    /// topic's volume down, at the cost of re-folding a few seconds of partials after a takeover.
    func mergeCheckpointRecords(final: Bool) throws -> [ProducerRecord]? {
        guard var merger else { return nil }
        var out: [ProducerRecord] = []
        // Model averaging runs with the merger's checkpoint, when a round is due: the average goes out before the
        // state recording it.
        if final || merger.rounds.roundDue(waiting: merger.engine.waitingShareWriters, at: .now),
           let (average, outputs) = merger.engine.averageStudents(at: merger.engine.windows.inputWatermark ?? 0) {
            merger.rounds.roundMade(at: .now)
            self.merger = merger
            try publish(outputs)
            out += try records(average, kind: .average, partition: -1, topic: config.topics.merge, topicPartition: 0,
                               key: "average")
        }
        guard final || ContinuousClock.now - lastMergeState >= mergeStateEvery else { return out }
        lastMergeState = ContinuousClock.now
        let published = PublishedMergeState(state: merger.engine.mergeState(), partialsNext: merger.next)
        return out + (try records(published, kind: .merge, partition: -1, topic: config.topics.merge,
                                  topicPartition: 0, key: "merge"))
    }

    /// The internal topics carry little data: a fetch should not wait the default 500 ms for more, since every hop
    /// (partials to the merger, averages to the workers) adds that wait to window and averaging latency.
    static let internalFetch = ["fetch.wait.max.ms": "20"]

    /// Reads partitions to their ends with a consumer of its own (reusing one consumer across reads returned stale
    /// records of an earlier read of the same partition and broke the churn test's figures).
    private func readToEnd(_ starts: [TopicPartition: Int64], _ body: (KafkaMessage) throws -> Void) async throws
        -> Bool {
        try await TopicReader.readToEnd(properties: properties, logger: logger, starts, body)
    }

    /// How often the merger writes its state: the instance checkpoint interval, but at least 5 s.
    var mergeStateEvery: Duration { .milliseconds(max(config.state.intervalMillis, 5_000)) }

    private func becomeMerger() async throws {
        let started = ContinuousClock.now
        let engine = try DistillEngine(config: config, role: .merger)
        engine.setSourcePartitions(samplesPartitions)
        // The last complete merge state.
        var assembler = ChunkAssembler()
        var last: PublishedMergeState?
        var averageAssembler = ChunkAssembler()
        var newestAverage: StudentAverage?
        let complete = try await readToEnd([TopicPartition(config.topics.merge, 0): KafkaOffset.beginning]) { m in
            // Averages published after the last state: the next round adds to the newest of them.
            if let average = decodeAverage(m, &averageAssembler) {
                if average.round > (newestAverage?.round ?? 0) { newestAverage = average }
                return
            }
            guard let record = ScaleOutRecord(bytes: m.value), record.kind == .merge,
                  let bytes = assembler.add(record) else { return }
            do {
                last = try StateBinaryDecoder().decode(PublishedMergeState.self, from: bytes)
            } catch {
                logger.error("merge topic: undecodable merge state at offset \(m.offset): \(error)")
            }
        }
        guard complete else {
            throw DaemonError.state("could not read \(config.topics.merge) to its end within 30 s to take over merging")
        }
        if let last { try engine.restoreMerge(last.state) }
        engine.resumeAveraging(after: newestAverage)
        lastMergeState = ContinuousClock.now
        try await readBackAlerts(engine)
        // The registry, from its beginning, before any partial: group keys and calibration need it.
        var outputs: [EngineOutput] = []
        _ = try await readToEnd([TopicPartition(config.topics.teachers, 0): KafkaOffset.beginning]) { m in
            outputs += engine.handleTeacher(m.value, key: m.key, at: InputPosition(
                topic: m.topic, partition: m.partition, offset: m.offset))
        }
        try publish(outputs)
        let consumer = try PartitionReader(properties: properties.withDefaults(Self.internalFetch), logger: logger)
        var starts: [TopicPartition: Int64] = [:]
        for p in 0..<partialsPartitions {
            starts[TopicPartition(config.topics.partials, p)] = last?.partialsNext[p] ?? KafkaOffset.beginning
        }
        try await consumer.assign(starts)
        merger = Merger(engine: engine, partials: consumer, next: last?.partialsNext ?? [:],
                        rounds: AveragingRoundPacer(checkpointInterval: .milliseconds(config.state.intervalMillis)))
        conflictingPartials = engine.conflictingPartials
        metrics.setMerging(true)
        logger.notice("merge lease taken: this instance merges", metadata: [
            "restored": "\(last != nil)", "took": "\(ContinuousClock.now - started)"])
    }

    private func stopMerging(_ why: String) async {
        guard let m = merger else { return }
        merger = nil
        metrics.setMerging(false)
        await m.partials.close()
        logger.notice("merge lease released: \(why)")
    }

    func close() async {
        await stopMerging("shutting down")
        await logger.shutdownStep("merge lease consumer close") { await lease.close() }
        await logger.shutdownStep("averages reader close") { await averages.close() }
    }
}
