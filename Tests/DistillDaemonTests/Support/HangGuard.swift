import Dispatch
import Foundation
import Testing

/// Turns a test that never returns into a prompt, located failure: after `limit` it names the test, prints every
/// thread's stack when gdb is there, and ends the test process, instead of leaving CI to its own timeout with nothing
/// to show. (Raising SIGQUIT for Swift's backtracer does not work here: background jobs ignore it.)
struct HangGuard: TestTrait, SuiteTrait, TestScoping {
    let limit: Duration

    var isRecursive: Bool { true }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        // Per test case only: a suite-level guard would have to bound the sum of its tests.
        guard testCase != nil else { return try await function() }
        let name = test.name
        let seconds = Int(limit.components.seconds)
        let watchdog = DispatchWorkItem {
            FileHandle.standardError.write(Data(
                "HANG: test \"\(name)\" still running after \(seconds) s; ending the test process\n".utf8))
            HangGuard.printThreads()
            // Again, last: CI may show only the tail of the output.
            FileHandle.standardError.write(Data("HANG: test \"\(name)\" (backtraces above)\n".utf8))
            fflush(nil)  // every stream: the test output printed so far
            _exit(86)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(seconds), execute: watchdog)
        defer { watchdog.cancel() }
        try await function()
    }
}

extension HangGuard {
    /// Every thread's backtrace from gdb, if it is installed and may attach; bounded to a minute.
    static func printThreads() {
        let gdb = "/usr/bin/gdb"
        guard FileManager.default.isExecutableFile(atPath: gdb) else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: gdb)
        process.arguments = ["-p", "\(getpid())", "-batch", "-nx", "-iex", "set print thread-events off",
                             "-ex", "thread apply all bt 30"]
        process.standardOutput = FileHandle.standardError
        process.standardError = FileHandle.nullDevice  // symbol-reading noise
        guard (try? process.run()) != nil else { return }
        let deadline = Date().addingTimeInterval(60)
        while process.isRunning && Date() < deadline { usleep(100_000) }
        if process.isRunning { process.terminate() }
    }
}

extension Trait where Self == HangGuard {
    /// Ends the test process, with every thread's backtrace, if one test case runs longer than `minutes` (ten times
    /// that for the long reliability runs, DISTILLD_RELIABILITY=long). The slowest case takes under 3 minutes here.
    static func hangGuard(minutes: Int = 10) -> Self {
        HangGuard(limit: .seconds(minutes * 60 * (ReliabilityScale.isLong ? 10 : 1)))
    }
}
