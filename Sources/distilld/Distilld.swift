import ArgumentParser

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
}
