import ArgumentParser
import DistillDaemon
import Foundation
import KafkaClient

/// `distilld replay FILE --topic T`: produces a JSON-lines file to a topic.
struct ReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Produce a JSON-lines file to a topic, one record per line, keyed by its id."
    )

    @Argument(help: "The JSON-lines file.")
    var file: String

    @Option(help: "The topic to produce to.")
    var topic: String

    @Option(help: "Records per second (default: as fast as possible).")
    var rate: Double?

    @Option(help: "Bootstrap servers (or use --bootstrap-file).")
    var bootstrap: String?

    @Option(help: "A file holding the bootstrap address, as written by `distilld broker --bootstrap-file`.")
    var bootstrapFile: String = ".distilld/bootstrap"

    @Option(help: "JSON field used as the message key.")
    var keyField: String = "id"

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = logging.bootstrap(label: "distilld.replay")
        let servers = try bootstrap ?? String(contentsOfFile: bootstrapFile, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let producer = try KafkaProducer(properties: KafkaProperties(["bootstrap.servers": servers]), logger: logger)
        let started = Date()
        let count = try await JSONLReplayer(path: file, topic: topic, keyField: keyField, rate: rate)
            .replay(with: producer) { n in
                let rate = Double(n) / max(Date().timeIntervalSince(started), 0.001)
                FileHandle.standardError.write(Data(String(format: "\r%d records (%.0f/s)", n, rate).utf8))
            }
        await producer.close()
        print("\nreplayed \(count) records from \(file) to \(topic)")
    }
}
