@testable import DistillDaemon
import Foundation
import Testing

@Suite("Pausing in a cancelled task")
struct PauseIgnoringCancellationTests {
    @Test("In a cancelled task Task.sleep returns at once; pauseIgnoringCancellation still waits, so a polling loop suspends")
    func pausesWhenCancelled() async throws {
        let task = Task { () -> (sleep: Duration, pause: Duration, iterations: Int) in
            while !Task.isCancelled { await Task.yield() }
            let clock = ContinuousClock()
            let sleepStarted = clock.now
            try? await Task.sleep(for: .milliseconds(200))
            let slept = clock.now - sleepStarted
            // A polling loop for 100 ms: with the pause it goes round about 10 times, not millions.
            let pauseStarted = clock.now
            var iterations = 0
            while clock.now - pauseStarted < .milliseconds(100) {
                await pauseIgnoringCancellation(.milliseconds(10))
                iterations += 1
            }
            return (slept, clock.now - pauseStarted, iterations)
        }
        task.cancel()
        let (slept, paused, iterations) = await task.value
        #expect(slept < .milliseconds(200), "the premise: a cancelled sleep does not wait")
        #expect(paused >= .milliseconds(100))
        #expect(iterations <= 10, "each pause waited its 10 ms")
        #expect(iterations >= 1)
    }
}
