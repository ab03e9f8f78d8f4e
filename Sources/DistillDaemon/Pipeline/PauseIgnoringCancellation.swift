import Dispatch

/// Waits `duration`, even in a cancelled task, for polling loops that must keep waiting (acknowledgments before a
/// commit, a child process's exit). `try? await Task.sleep` returns at once in a cancelled task, so such a loop spins
/// without ever suspending: two of them held both threads of this 2-core machine's cooperative pool, every other task
/// starved, and a CI run hung.
public func pauseIgnoringCancellation(_ duration: Duration) async {
    let (seconds, attoseconds) = duration.components
    let microseconds = Int(seconds) * 1_000_000 + Int(attoseconds / 1_000_000_000_000)
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().asyncAfter(deadline: .now() + .microseconds(max(microseconds, 0))) {
            continuation.resume()
        }
    }
}
