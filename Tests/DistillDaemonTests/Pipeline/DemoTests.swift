import DistillDaemon
import Foundation
import Logging
import Synchronization
import Testing

/// `distilld demo` as the README's main job runs it.
@Suite("distilld demo", .serialized, .hangGuard())
struct DemoTests {
    @Test("The shipped rotation fires teacher_kl_drift, nothing fires in the stable stretch, and the demo exits")
    func demo() async throws {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "demo-test")
        logger.logLevel = .error
        let root = packageRoot.path
        let summary = try await DemoRunner(
            configPath: root + "/config/demo.yaml", samplesPath: root + "/streams/examples/rotation.jsonl",
            teachersPath: root + "/streams/examples/rotation-teachers.jsonl", logger: logger,
            print: { line in lines.withLock { $0.append(line) } }
        ).run()
        #expect(summary.processed == 6000 && summary.samples == 6000)
        #expect((summary.alerts["teacher_kl_drift"] ?? 0) >= 1, "\(summary.alerts)")
        #expect(!summary.calibration.isEmpty, "calibration checks were published")
        // The teachers change at 10:38:20Z: every alert's window must end after that.
        let alertLines = lines.withLock { $0 }.filter { $0.hasPrefix("ALERT") }
        #expect(!alertLines.isEmpty)
        for line in alertLines {
            let end = try #require(line.range(of: "–")).upperBound
            let endTime = String(line[end...].prefix(24))
            #expect(endTime > "2026-11-23T10:38:20.000Z", "nothing fires in the stable stretch: \(line)")
        }
    }
}
