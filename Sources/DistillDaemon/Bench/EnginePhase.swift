import DistillCore
import Dispatch
import Foundation
import Histogram

// MARK: - EnginePhase

/// `--engine-only`: the pipeline mode's own `DistillEngine`, fed in this thread the same records, partitions and late
/// labels the feeder produces, without Kafka. Its rate is the engine's ceiling on one core: the gap to the same mode
/// over the broker is what consuming, publishing and checkpointing cost. Records are generated in chunks outside the
/// timed part; outputs are built (as the engine returns them) but not published.
struct EnginePhase {
    let context: Context
    let topics: BenchTopics
    let run: BenchRun

    /// Records generated per untimed chunk.
    static let chunk = 10_000
    /// Appended to the configuration's name in the report.
    static let suffix = " engine-only"
    /// Records between two state snapshots: more often than the daemon's checkpoints at these rates (10 s is about
    /// 400,000 records at 40,000/s), so the copies a snapshot forces show in the record times often enough to count.
    static let snapshotEvery = 50_000

    func measure() throws -> BenchReport.RunResult {
        let o = context.options
        let yaml = PipelinePhase(context: context, topics: topics, run: run)
            .configYAML(stateDirectory: context.directory + "/engine-unused")
        let config = try DistillConfig.parse(yaml, file: "<bench \(run) engine-only>")
        let engine = try DistillEngine(config: config)
        for (i, record) in context.stream.teacherRecords().enumerated() {
            _ = engine.handleTeacher(record.value, key: Array(record.key.utf8),
                                     at: InputPosition(topic: topics.teachers, partition: 0, offset: Int64(i)))
        }
        engine.partitionsAssigned((0..<Int32(o.partitions)).map { $0 })
        var offsets = [Int64](repeating: 0, count: o.partitions)
        var labelOffsets = [Int64](repeating: 0, count: o.partitions)
        var pending: [(due: Int, index: Int, label: Int)] = []
        var head = 0
        var outputs = 0
        var nanos: UInt64 = 0
        BenchMemory.resetPeak()
        let startRSS = Context.rssMegabytes
        var records: [(index: Int, bytes: [UInt8], isLabel: Bool)] = []
        var times = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        var slowest: [BenchReport.SlowRecord] = []
        var over1ms = 0, over1msClosing = 0, over1msAfterSnapshot = 0
        var sinceSnapshot = 0
        var snapshot: DistillEngine.EngineState?
        var buffer: [UInt8] = []
        var first = 0
        while first < o.samples {
            let count = min(Self.chunk, o.samples - first)
            records.removeAll(keepingCapacity: true)
            for i in first..<(first + count) {
                buffer.removeAll(keepingCapacity: true)
                let fate = context.stream.sample(i, format: run.format, into: &buffer)
                records.append((i, buffer, false))
                if case .late(let label) = fate { pending.append((i + BenchFeeder.lateLabelDelay, i, label)) }
                // After the last sample, every label still pending is due.
                let last = i == o.samples - 1
                while head < pending.count, last || pending[head].due <= i {
                    records.append((pending[head].index, context.stream.lateLabel(
                        pending[head].index, label: pending[head].label, format: run.format), true))
                    head += 1
                }
            }
            if head > 4096 {
                pending.removeFirst(head)
                head = 0
            }
            for record in records {
                // Held until the next one, as the daemon holds a checkpoint's snapshot while it is written.
                let afterSnapshot = sinceSnapshot == Self.snapshotEvery
                if afterSnapshot {
                    snapshot = engine.state()
                    sinceSnapshot = 0
                }
                sinceSnapshot += 1
                let p = record.index % o.partitions
                let started = DispatchTime.now().uptimeNanoseconds
                let produced: Int
                if record.isLabel {
                    let at = InputPosition(topic: topics.labels, partition: Int32(p), offset: labelOffsets[p])
                    labelOffsets[p] += 1
                    produced = engine.handleLabel(record.bytes, key: nil, at: at).count
                } else {
                    let at = InputPosition(topic: topics.samples, partition: Int32(p), offset: offsets[p])
                    offsets[p] += 1
                    produced = engine.handleSample(record.bytes, key: nil, at: at).count
                }
                let took = DispatchTime.now().uptimeNanoseconds - started
                nanos += took
                outputs += produced
                times.record(took)
                if took > 1_000_000 {
                    over1ms += 1
                    if produced > 0 { over1msClosing += 1 }
                    if afterSnapshot { over1msAfterSnapshot += 1 }
                }
                if slowest.count < 5 || Double(took) / 1e3 > slowest.last!.microseconds {
                    slowest.append(.init(microseconds: Double(took) / 1e3, outputs: produced,
                                         afterSnapshot: afterSnapshot))
                    slowest.sort { $0.microseconds > $1.microseconds }
                    if slowest.count > 5 { slowest.removeLast() }
                }
            }
            first += count
        }
        _ = snapshot
        snapshot = nil
        let seconds = Double(nanos) / 1e9
        let runPeak = BenchMemory.peakBytes.map { Double($0) / 1e6 }  // before the checkpoint measurements below
        let state = engine.state()
        let (checkpoint, whole) = try Self.checkpointCost(state, directory: context.directory + "/engine-checkpoint")
        // What the state checkpoint would hold now, and its largest parts.
        func megabytes<T: Encodable>(_ value: T) throws -> Double { Double(try StateBinaryEncoder().encode(value).count) / 1e6 }
        let stateMegabytes = [
            "total": Double(whole.bytes) / 1e6, "windows": try megabytes(state.windows),
            "label join": try megabytes(state.labelJoin), "recent ids": try megabytes(state.recentIDs),
        ]
        let ingested = engine.counters.samplesIngested
        guard ingested == o.samples else {
            throw BenchError.incomplete("\(run) engine-only: ingested \(ingested) of \(o.samples) samples "
                                        + "(dead letters \(engine.counters.deadLetters))")
        }
        return BenchReport.RunResult(
            name: "\(run)" + Self.suffix, produced: o.samples, processed: ingested,
            samplesPerSecond: Double(o.samples) / seconds, seconds: seconds, vsRawConsume: nil, vsJSONDecoder: nil,
            preloaded: true, producerWaitedSeconds: 0, latency: nil, startRSSMegabytes: startRSS,
            peakRSSMegabytes: runPeak, rss: [],
            outputs: ["engine outputs": outputs], unexpectedDeadLetters: 0, stateMegabytes: stateMegabytes,
            stateEncodeMilliseconds: whole.milliseconds, checkpointCost: checkpoint,
            recordTimes: .init(
                p50Microseconds: Double(times.valueAtPercentile(50)) / 1e3,
                p99Microseconds: Double(times.valueAtPercentile(99)) / 1e3,
                p999Microseconds: Double(times.valueAtPercentile(99.9)) / 1e3,
                maxMicroseconds: Double(times.max) / 1e3, over1ms: over1ms, over1msClosingWindows: over1msClosing,
                over1msAfterSnapshot: over1msAfterSnapshot, slowest: slowest, snapshotEvery: Self.snapshotEvery))
    }

    static func milliseconds(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15
    }

    /// Writes `state` as the daemon's checkpoint does (streamed into the file) and, for comparison, encoded whole
    /// first as it was until 2026-12-07 (reserving its size and an eighth, as the daemon did from its second
    /// checkpoint on). Each figure is what the write added to this process's RSS at its peak (`VmHWM` reset before
    /// it) and how long it took, on this thread. Also returns the whole encoding's size and how long encoding alone
    /// took (the state's size and encoding time in the report).
    static func checkpointCost(_ state: DistillEngine.EngineState, directory: String) throws
        -> (cost: BenchReport.CheckpointCost, whole: (bytes: Int, milliseconds: Double)) {
        let store = StateStore(directory: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func checkpoint(_ sequence: UInt64, _ sections: [StateSection]) -> StateCheckpoint {
            StateCheckpoint(sequence: sequence, createdAtMilliseconds: StateStore.systemMilliseconds(),
                            configRevision: "bench", writerVersion: DistillService.version, offsets: [:],
                            sections: sections)
        }
        func measured(_ write: () throws -> StateWriteReceipt) throws -> (Double, Double, UInt64) {
            let before = BenchMemory.residentBytes ?? 0
            BenchMemory.resetPeak()
            let start = ContinuousClock.now
            let receipt = try write()
            let elapsed = ContinuousClock.now - start
            let added = max(0, (BenchMemory.peakBytes ?? before) - before)
            return (Double(added) / 1e6, milliseconds(elapsed), receipt.bytes)
        }
        let (streamedMB, streamedMS, bytes) = try measured {
            try store.write(checkpoint(1, []), streaming: [StateStreamedSection(name: "engine", value: state)])
        }
        var whole = (bytes: 0, milliseconds: 0.0)
        let (wholeMB, wholeMS, _) = try measured {
            let size = Int(bytes)
            let start = ContinuousClock.now
            let encoded = try StateBinaryEncoder(capacity: size + size / 8).encode(state)
            whole = (encoded.count, milliseconds(ContinuousClock.now - start))
            return try store.write(checkpoint(2, [StateSection(name: "engine", bytes: encoded)]))
        }
        let cost = BenchReport.CheckpointCost(
            fileMegabytes: Double(bytes) / 1e6, streamedAddedMegabytes: streamedMB, streamedMilliseconds: streamedMS,
            wholeAddedMegabytes: wholeMB, wholeMilliseconds: wholeMS)
        return (cost, whole)
    }
}
