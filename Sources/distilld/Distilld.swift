import ArgumentParser
import DistillDaemon

/// The `distilld` command line: one thin file per subcommand.
@main
struct Distilld: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distilld",
        abstract: "Online continuous distillation: watch teacher/student traffic on Kafka and decide when to re-distill.",
        subcommands: [
            RunCommand.self, DemoCommand.self, ReplayCommand.self, BrokerCommand.self, CheckConfigCommand.self,
            BenchCommand.self,
        ]
    )

    /// Applies the process-wide malloc settings, then runs the subcommand.
    static func main() async {
        MemoryTuning.apply()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
