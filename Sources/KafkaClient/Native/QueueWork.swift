import Dispatch
import Logging
import Synchronization

extension DispatchQueue {
    /// Runs blocking librdkafka work on this serial queue and awaits its result, off Swift's cooperative pool.
    func result<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in async { continuation.resume(returning: work()) } }
    }

    /// Runs `work` on this queue and returns when it is done, or after `timeout` with `onTimeout` called while the
    /// work goes on (a librdkafka close can wait for ever for a broker).
    func bounded(by timeout: Duration, _ work: @escaping @Sendable () -> Void,
                 onTimeout: @escaping @Sendable () -> Void) async {
        let finished = ResumeOnce()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            finished.set(continuation)
            async {
                work()
                finished.resume()
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(timeout.milliseconds))) {
                if finished.resume() { onTimeout() }
            }
        }
    }
}

/// Resumes a continuation once, whichever of several paths gets there first.
final class ResumeOnce: Sendable {
    private let continuation = Mutex<CheckedContinuation<Void, Never>?>(nil)
    private let done = Atomic<Bool>(false)

    func set(_ c: CheckedContinuation<Void, Never>) {
        continuation.withLock { $0 = c }
    }

    /// True for the caller that resumed it.
    @discardableResult
    func resume() -> Bool {
        guard !done.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        let c = continuation.withLock { c in defer { c = nil }; return c }
        c?.resume()
        return true
    }
}
