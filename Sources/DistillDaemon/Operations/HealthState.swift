import Synchronization

// MARK: - HealthState

/// Liveness and readiness of the daemon, as `/healthz` and `/readyz` report them.
///
/// Ready means the daemon does useful work: its state is restored from the last checkpoint and the consumer group
/// has assigned it partitions. It stops being ready when shutdown begins, so a supervisor stops waiting on it while
/// it drains. Live is false only after ``failed(reason:)``: a fatal error that a restart may cure.
///
/// A small state machine behind one lock; events may arrive from any task or thread.
public final class HealthState: Sendable {
    /// What the endpoint reports at one moment.
    public struct Status: Sendable, Equatable {
        /// The process works; `/healthz` answers 200 while true.
        public var isLive: Bool
        /// The daemon does useful work; `/readyz` answers 200 while true.
        public var isReady: Bool
        /// Why it is not ready or not live, or `ok`; the body of a 503.
        public var reason: String

        /// Creates a status.
        public init(isLive: Bool, isReady: Bool, reason: String) {
            self.isLive = isLive
            self.isReady = isReady
            self.reason = reason
        }
    }

    private let machine: Mutex<HealthMachine>

    /// Starts live and not ready, waiting for the state restore and the partition assignment.
    public init() {
        self.machine = Mutex(HealthMachine())
    }

    /// The current liveness, readiness and reason.
    public var status: Status {
        machine.withLock { $0.status }
    }

    /// Whether `/healthz` answers 200.
    public var isLive: Bool { status.isLive }

    /// Whether `/readyz` answers 200.
    public var isReady: Bool { status.isReady }

    /// The state was restored from the last checkpoint (or started empty).
    public func stateRestored() {
        machine.withLock { $0.stateRestored = true }
    }

    /// The consumer group assigned this member its partitions (possibly none: it is still a ready member).
    public func partitionsAssigned() {
        machine.withLock { $0.assigned = true }
    }

    /// The consumer group took the partitions away for a rebalance; ready again after the next assignment.
    public func partitionsRevoked() {
        machine.withLock { $0.assigned = false }
    }

    /// Graceful shutdown began: not ready from now on. Does not undo ``failed(reason:)``.
    public func shutdownBegan() {
        machine.withLock { state in
            if state.phase == .running {
                state.phase = .shuttingDown
            }
        }
    }

    /// A checkpoint could not be written: not ready, with `reason`, until one is written again. Live all the same:
    /// the daemon keeps processing and retries, and commits nothing in the meantime.
    public func checkpointFailing(reason: String) {
        machine.withLock { $0.checkpointFailure = reason }
    }

    /// A checkpoint was written: clears ``checkpointFailing(reason:)``.
    public func checkpointWritten() {
        machine.withLock { $0.checkpointFailure = nil }
    }

    /// A fatal error: not live and not ready from now on; `reason` is what the probes report.
    public func failed(reason: String) {
        machine.withLock { $0.phase = .failed(reason: reason) }
    }
}

// MARK: - HealthMachine

/// The state behind ``HealthState``; `status` is derived so the flags can never disagree with the reason.
struct HealthMachine {
    enum Phase: Equatable {
        case running
        case shuttingDown
        case failed(reason: String)
    }

    var phase = Phase.running
    var stateRestored = false
    var assigned = false
    var checkpointFailure: String?

    var status: HealthState.Status {
        switch phase {
        case .failed(let reason):
            return HealthState.Status(isLive: false, isReady: false, reason: reason)
        case .shuttingDown:
            return HealthState.Status(isLive: true, isReady: false, reason: "shutting down")
        case .running:
            if !stateRestored {
                return HealthState.Status(isLive: true, isReady: false, reason: "restoring state")
            }
            if !assigned {
                return HealthState.Status(isLive: true, isReady: false, reason: "waiting for partition assignment")
            }
            if let failure = checkpointFailure {
                return HealthState.Status(isLive: true, isReady: false, reason: "state checkpoint failing: \(failure)")
            }
            return HealthState.Status(isLive: true, isReady: true, reason: "ok")
        }
    }
}
