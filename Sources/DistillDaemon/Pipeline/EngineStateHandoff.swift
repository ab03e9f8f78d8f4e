import DistillCore
import Synchronization

// MARK: - EngineStateHandoff

/// A checkpoint's engine state, handed to the checkpoint thread, which lets go of each large part once it is written.
///
/// While a checkpoint is written the loop goes on, and what it replaces in the state stays alive for as long as the
/// snapshot holds the old version. The label join turns over fastest: unlabeled samples evict the oldest of its
/// 50,000 waiting samples, at 50,000 records/s all of them within the second a checkpoint takes on a busy core. So
/// the parts that turn over are written first (label join, duplicate filter, windows), each moved out of the handoff
/// as it is written: what the loop replaced in it is freed then, not at the end of the checkpoint.
final class EngineStateHandoff: Encodable, Sendable {
    private typealias State = DistillEngine.EngineState
    private let held: Mutex<State?>
    private let written = Atomic(false)

    init(_ state: consuming DistillEngine.EngineState) {
        held = Mutex(state)
    }

    /// What the handoff still holds of the parts it lets go of (for tests): waiting samples, recent ids, and the
    /// windows' open panes; nil once written.
    var holding: (waitingSamples: Int, recentIDs: Int, openPanes: Int)? {
        held.withLock { s in s.map { ($0.labelJoin.waitingSamples, $0.recentIDs.count, $0.windows.openPaneCount) } }
    }

    /// Encodes the state (the fields of `EngineState.CodingKeys`), giving it up as it goes: a second encoding throws.
    func encode(to encoder: any Encoder) throws {
        guard !written.exchange(true, ordering: .relaxed) else {
            throw EncodingError.invalidValue(self, .init(codingPath: encoder.codingPath,
                                                         debugDescription: "engine state handoff written twice"))
        }
        defer { held.withLock { $0 = nil } }
        func read<T: Sendable>(_ part: KeyPath<State, T> & Sendable) -> T { held.withLock { $0![keyPath: part] } }
        /// Moves a part out, leaving an empty one of the same shape: the caller's copy is then the only one.
        func take<T: Sendable>(_ part: WritableKeyPath<State, T> & Sendable, leaving empty: (T) -> T) -> T {
            held.withLock { s in
                let value = s![keyPath: part]
                s![keyPath: part] = empty(value)
                return value
            }
        }
        var c = encoder.container(keyedBy: State.CodingKeys.self)
        try c.encode(read(\.formatVersion), forKey: .formatVersion)
        try c.encode(read(\.configRevision), forKey: .configRevision)
        try c.encode(take(\.labelJoin) { LabelJoinBuffer(windowMillis: $0.windowMillis, capacity: $0.capacity) },
                     forKey: .labelJoin)
        try c.encode(take(\.recentIDs) { RecentIDs(capacity: $0.capacity) }, forKey: .recentIDs)
        try c.encode(take(\.windows) { DistillWindowSet(config: $0.config) }, forKey: .windows)
        try c.encode(read(\.evaluator), forKey: .evaluator)
        try c.encode(read(\.emittedAlerts), forKey: .emittedAlerts)
        try c.encode(read(\.parked), forKey: .parked)
        try c.encode(read(\.counters), forKey: .counters)
        try c.encode(read(\.partitionEventTime), forKey: .partitionEventTime)
        try c.encode(read(\.samplesSinceCheckpoint), forKey: .samplesSinceCheckpoint)
        try c.encodeIfPresent(read(\.student), forKey: .student)
    }
}

extension DistillEngine.EngineState {
    /// The handoff's bytes: a state is encoded one way, whether a checkpoint writes it or a test.
    func encode(to encoder: any Encoder) throws {
        try EngineStateHandoff(self).encode(to: encoder)
    }
}
