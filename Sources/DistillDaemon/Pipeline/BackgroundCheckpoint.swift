import Foundation
import KafkaClient
import Logging
import Synchronization

// MARK: - OutputLedger

/// Outputs sent and not yet acknowledged, counted per checkpoint epoch.
///
/// The loop seals an epoch when it takes a checkpoint; the state in that checkpoint derived exactly the outputs of
/// the sealed epochs, so it may become durable once all of those are acknowledged, while the loop goes on sending
/// the next epoch's. Delivery callbacks run on the producer's poll thread, hence the lock.
final class OutputLedger: Sendable {
    /// Where the outputs up to an epoch stand.
    enum Status: Sendable {
        case pending
        case acknowledged
        case failed(KafkaError)
    }

    private struct Books {
        var epoch = 0
        /// Unacknowledged outputs per epoch; an epoch leaves when its count reaches 0.
        var pending: [Int: Int] = [:]
        /// The first failed delivery per epoch.
        var failures: [Int: KafkaError] = [:]
    }

    private let books = Mutex(Books())

    /// Counts an output about to be sent; pass the returned epoch to ``settled(epoch:error:)`` exactly once.
    func sending() -> Int {
        books.withLock { b in
            b.pending[b.epoch, default: 0] += 1
            return b.epoch
        }
    }

    /// The broker's verdict on one output: acknowledged (`error` nil) or finally failed.
    func settled(epoch: Int, error: KafkaError?) {
        books.withLock { b in
            let left = (b.pending[epoch] ?? 0) - 1
            b.pending[epoch] = left == 0 ? nil : left
            if let error, b.failures[epoch] == nil { b.failures[epoch] = error }
        }
    }

    /// Ends the current epoch and returns it; outputs sent from now on belong to the next one.
    func seal() -> Int {
        books.withLock { b in
            b.epoch += 1
            return b.epoch - 1
        }
    }

    /// Whether every output of the epochs up to `epoch` was acknowledged, or one of them failed.
    func status(through epoch: Int) -> Status {
        books.withLock { b in
            if let first = b.failures.keys.filter({ $0 <= epoch }).min(), let error = b.failures[first] {
                return .failed(error)
            }
            return b.pending.keys.contains { $0 <= epoch } ? .pending : .acknowledged
        }
    }
}

// MARK: - CheckpointJob

/// A checkpoint taken between two batches: the engine's state (a copy-on-write value) and the next input offset
/// per partition it covers, plus the output epoch it derived. The state is written once: it lets go of its parts as
/// they are encoded (`EngineStateHandoff`).
struct CheckpointJob: Sendable {
    let epoch: Int
    let engine: EngineStateHandoff
    let offsets: [TopicPartition: Int64]
    let configRevision: String
}

/// How a checkpoint ended.
enum CheckpointOutcome: Sendable {
    /// Durable; its offsets were then stored and committed (or the commit failed and is counted, not fatal).
    case written(StateWriteReceipt)
    /// An output it derived was not delivered: nothing may be committed, and the daemon stops.
    case deliveryFailed(KafkaError)
    /// The state could not be written (a full or read-only directory...): nothing was committed.
    case writeFailed(String)
}

// MARK: - CheckpointWriter

/// Completes checkpoints off the loop, in the commit protocol's order: outputs acknowledged → state durable →
/// offsets committed. Encoding the state and `fsync` run on a thread of their own, so the loop only pays for
/// taking the copy-on-write snapshot.
struct CheckpointWriter: Sendable {
    let ledger: OutputLedger
    let store: StateStore
    let inputs: KafkaConsumer
    let hooks: DistillServiceHooks
    let metrics: DistillMetrics
    let logger: Logger

    /// Runs `job` to its end; never throws: the outcome says what happened.
    func complete(_ job: CheckpointJob) async -> CheckpointOutcome {
        let started = ContinuousClock.now
        // 1. Every output the state derived is acknowledged (the producer's message timeout bounds the wait).
        acknowledged: while true {
            switch ledger.status(through: job.epoch) {
            case .acknowledged: break acknowledged
            case .failed(let error): return .deliveryFailed(error)
            case .pending: await pauseIgnoringCancellation(.milliseconds(2))  // no commit before the acknowledgments
            }
        }
        // 2. The state is durable.
        let store = self.store
        let written: Result<StateWriteReceipt, any Error> = await Self.onOwnThread {
            Result {
                let offsets = Dictionary(uniqueKeysWithValues: job.offsets.map {
                    (StateTopicPartition(topic: $0.key.topic, partition: $0.key.partition), $0.value)
                })
                let checkpoint = StateCheckpoint(
                    sequence: store.nextSequence, createdAtMilliseconds: StateStore.systemMilliseconds(),
                    configRevision: job.configRevision, writerVersion: DistillService.version, offsets: offsets,
                    sections: [])
                // Encoded into the file as it is written: held whole, the encoding added the state's size to the
                // daemon's peak memory at every checkpoint.
                return try store.write(checkpoint, streaming: [StateStreamedSection(name: "engine", value: job.engine)])
            }
        }
        let receipt: StateWriteReceipt
        switch written {
        case .success(let r): receipt = r
        case .failure(let error): return .writeFailed("\(error)")
        }
        hooks.onCheckpoint(job.offsets)
        // 3. Only now the offsets.
        let committed = await commit(job.offsets)
        logger.debug("checkpoint", metadata: [
            "took": "\(ContinuousClock.now - started)", "bytes": "\(receipt.bytes)", "partitions": "\(committed)"])
        return .written(receipt)
    }

    /// Stores and commits offsets whose state is durable; returns how many partitions. Partitions no longer assigned
    /// are left to their new owner.
    func commit(_ offsets: [TopicPartition: Int64]) async -> Int {
        let assigned = Set(inputs.assignment)
        let done = offsets.filter { assigned.contains($0.key) }
        guard !done.isEmpty else { return 0 }
        do {
            try inputs.markDone(done)
            try await inputs.commit()
        } catch {
            // Not fatal: a restart resumes from the checkpoint's offsets, not the group's, and the next
            // checkpoint commits again. A broker outage or a lost assignment must not stop the daemon.
            metrics.commitFailed()
            logger.warning("offset commit failed; the checkpoint holds the offsets, retrying at the next one",
                           metadata: ["error": "\(error)"])
        }
        return done.count
    }

    /// Runs blocking work (JSON encoding, `fsync`) on a new thread, keeping the cooperative pool free.
    /// Niceness of the checkpoint thread. Encoding a state of tens of MB takes most of a second of CPU; at the loop's
    /// priority, on a busy machine, it took that second from the loop and the Kafka client's threads and showed up
    /// as produce→alert latency. At 10 it still gets about a tenth of a contended core (a checkpoint then takes a few
    /// seconds longer, and `distilld_checkpoint_age_seconds` shows it), all of an idle one.
    static let checkpointNiceness: Int32 = 10

    /// Lowers the calling thread's scheduling priority to ``checkpointNiceness`` (Linux: niceness is per thread).
    static func lowerPriority() {
        #if os(Linux)
        // `gettid` is not in Swift's Glibc module (glibc ≥ 2.30 has it); look it up.
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "gettid") else { return }
        let gettid = unsafeBitCast(symbol, to: (@convention(c) () -> Int32).self)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(gettid()), checkpointNiceness)
        #endif
    }

    static func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            let thread = Thread {
                lowerPriority()
                continuation.resume(returning: work())
            }
            thread.name = "distilld-checkpoint"
            thread.stackSize = 16 << 20  // JSONEncoder recurses through the nested state
            thread.start()
        }
    }
}
