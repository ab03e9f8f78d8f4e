import Foundation
import KafkaClient
import Logging
import ServiceLifecycle

// MARK: - EmbeddedBrokerService

/// `distilld broker`: runs the embedded broker with distilld's topics until graceful shutdown (SIGTERM/SIGINT),
/// publishing its random bootstrap address on stdout and in a file.
public struct EmbeddedBrokerService: Service {
    public var brokers: Int
    public var topicsFile: String
    public var bootstrapFile: String?
    public var logger: Logger
    /// Called once the broker is up and its topics exist (tests use it to learn the address).
    public var onReady: @Sendable (EmbeddedBroker) -> Void

    public init(
        brokers: Int, topicsFile: String, bootstrapFile: String?, logger: Logger,
        onReady: @escaping @Sendable (EmbeddedBroker) -> Void = { _ in }
    ) {
        self.brokers = brokers
        self.topicsFile = topicsFile
        self.bootstrapFile = bootstrapFile
        self.logger = logger
        self.onReady = onReady
    }

    public func run() async throws {
        let catalog = try TopicCatalog.load(path: topicsFile)
        let broker = try EmbeddedBroker(brokers: brokers, logger: logger)
        try broker.createTopics(catalog.specs)
        if let bootstrapFile { try Self.writeAtomically(broker.bootstrapServers + "\n", to: bootstrapFile) }
        logger.info("embedded broker up", metadata: [
            "bootstrap": "\(broker.bootstrapServers)", "brokers": "\(brokers)",
            "topics": "\(catalog.topics.map { "\($0.spec.name)×\($0.spec.partitions)" }.joined(separator: " "))"])
        // Unbuffered, so a script reading our stdout sees the address at once.
        FileHandle.standardOutput.write(Data("bootstrap.servers=\(broker.bootstrapServers)\n".utf8))
        onReady(broker)
        try? await gracefulShutdown()
        if let bootstrapFile { try? FileManager.default.removeItem(atPath: bootstrapFile) }
        logger.info("embedded broker stopped")
        withExtendedLifetime(broker) {}
    }

    /// Writes via a temp file and rename, so a reader never sees a half-written address.
    static func writeAtomically(_ text: String, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
        try Data(text.utf8).write(to: tmp)
        guard rename(tmp.path, url.path) == 0 else {
            throw ConfigError(file: path, line: nil, key: "", message: "cannot write the bootstrap file (errno \(errno))")
        }
    }
}
