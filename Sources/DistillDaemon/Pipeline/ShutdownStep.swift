import Logging

extension Logger {
    /// Runs one step of the shutdown, logging its start, and its duration when it took over a second. A supervisor may
    /// kill a slow shutdown before the step's own timeout reports anything: the last step logged is where it stood.
    func shutdownStep<T>(_ step: String, _ body: () async throws -> T) async rethrows -> T {
        let started = ContinuousClock.now
        info("shutting down: \(step)")
        let result = try await body()
        let took = ContinuousClock.now - started
        if took > .seconds(1) { notice("shutting down: \(step) took \(took)") }
        return result
    }
}
