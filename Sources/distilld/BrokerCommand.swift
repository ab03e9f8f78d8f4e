import ArgumentParser
import DistillDaemon
import Logging
import ServiceLifecycle

/// `distilld broker`: the embedded Kafka broker with distilld's topics, until SIGTERM/SIGINT.
struct BrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Start the embedded Kafka broker (librdkafka's mock cluster) with distilld's topics.",
        discussion: """
            Prints the bootstrap address and writes it to --bootstrap-file (ports are random). Memory only: about \
            5 MiB is kept per partition, nothing is compacted, transactions are not honoured.
            """
    )

    @Option(help: "Number of brokers in the cluster (1-32).")
    var brokers: Int = 1

    @Option(help: "Topic definitions to create.")
    var topics: String = "streams/topics.yaml"

    @Option(help: "File to write the bootstrap address to (removed on shutdown).")
    var bootstrapFile: String?

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard (1...32).contains(brokers) else { throw ValidationError("--brokers must be between 1 and 32") }
    }

    func run() async throws {
        let logger = logging.bootstrap(label: "distilld.broker")
        let service = EmbeddedBrokerService(
            brokers: brokers, topicsFile: topics, bootstrapFile: bootstrapFile, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
