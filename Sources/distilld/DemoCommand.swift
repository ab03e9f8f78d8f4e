import ArgumentParser
import DistillDaemon
import Foundation

/// `distilld demo`: embedded broker + daemon + the shipped teacher-rotation stream.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Replay the shipped teacher-rotation example through the daemon on the embedded broker.",
        discussion: "Prints alerts and calibration checks as they appear, then a summary once the stream is processed."
    )

    @Option(help: "The demo config.")
    var config: String = "config/demo.yaml"

    @Option(help: "The sample stream (JSON lines).")
    var samples: String = "streams/examples/rotation.jsonl"

    @Option(help: "The teacher registry records (JSON lines).")
    var teachers: String = "streams/examples/rotation-teachers.jsonl"

    @Flag(help: "Keep running after the stream has been processed (until SIGTERM/SIGINT).")
    var follow = false

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = logging.bootstrap(label: "distilld.demo")
        let summary = try await DemoRunner(
            configPath: config, samplesPath: samples, teachersPath: teachers, follow: follow, logger: logger
        ).run()
        print("""
            summary: \(summary.processed) of \(summary.samples) samples processed in \
            \(String(format: "%.1f", summary.seconds)) s
              alerts: \(summary.alerts.isEmpty ? "none" : summary.alerts.sorted { $0.key < $1.key }
                .map { "\($0.key)×\($0.value)" }.joined(separator: ", "))
              calibration checks: \(summary.calibration.sorted { $0.key < $1.key }
                .map { "\($0.key)×\($0.value)" }.joined(separator: ", "))
            """)
    }
}
