import Foundation

/// When the merger makes an averaging round: once every worker heard from lately has a share waiting, so that a
/// round's shares start from the same average (FedAvg's synchronous rounds), or once the first share has waited
/// `maxWait`, so that a slow or departed worker delays a round but never stops averaging.
///
/// Without it, shares were averaged at the merger's next checkpoint, and most rounds held one worker's share: the
/// other worker's share then started from an older average, and model quality depended on the machine's timing.
struct AveragingRoundPacer {
    let maxWait: Duration
    /// A worker whose last share is older than this is no longer waited for.
    let activeFor: Duration
    private var lastShare: [UInt64: ContinuousClock.Instant] = [:]
    private var firstWaiting: ContinuousClock.Instant?

    init(maxWait: Duration, activeFor: Duration) {
        self.maxWait = maxWait
        self.activeFor = activeFor
    }

    /// The pacing for an instance checkpoint `interval`: a round waits at most two checkpoints (at least 1 s), and a
    /// worker silent for ten such waits is considered gone.
    init(checkpointInterval interval: Duration) {
        let wait = max(interval * 2, .seconds(1))
        self.init(maxWait: wait, activeFor: wait * 10)
    }

    mutating func shareArrived(from writer: UInt64, at now: ContinuousClock.Instant) {
        lastShare[writer] = now
        if firstWaiting == nil { firstWaiting = now }
    }

    /// Whether to average the shares of `waiting` (the writers with a share not averaged yet) now.
    func roundDue(waiting: Set<UInt64>, at now: ContinuousClock.Instant) -> Bool {
        guard !waiting.isEmpty else { return false }
        // Shares restored with a merge state have no arrival time here: they do not wait again.
        guard let first = firstWaiting, now - first < maxWait else { return true }
        return lastShare.allSatisfy { waiting.contains($0.key) || now - $0.value >= activeFor }
    }

    /// After a round: nothing waits, and workers gone silent are forgotten.
    mutating func roundMade(at now: ContinuousClock.Instant) {
        firstWaiting = nil
        lastShare = lastShare.filter { now - $0.value < activeFor }
    }
}
