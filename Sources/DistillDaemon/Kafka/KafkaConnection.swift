import Foundation
import KafkaClient
import Logging

// MARK: - KafkaConnection

/// The Kafka a distilld process talks to: properties for its clients, and the embedded broker when the config
/// says `brokers: embedded` (it lives as long as this connection).
public final class KafkaConnection: Sendable {
    /// The in-process broker, when there is one.
    public let embedded: EmbeddedBroker?
    /// Client properties: the `kafka:` map (secrets resolved) plus `bootstrap.servers`.
    public let properties: KafkaProperties

    /// Connects per `settings`: starts and provisions the embedded broker, or points at the real cluster.
    public init(_ settings: BrokerSettings, logger: Logger = Logger(label: "distilld.kafka")) throws {
        let kafka = try settings.kafka.resolvingEnvironment()
        switch settings.brokers {
        case .embedded(let brokers):
            let broker = try EmbeddedBroker(brokers: brokers, logger: logger)
            let catalog = try TopicCatalog.load(path: settings.topicsFile)
            try broker.createTopics(catalog.specs)
            embedded = broker
            properties = kafka.merging(broker.clientProperties)
            logger.info("embedded broker started", metadata: [
                "bootstrap": "\(broker.bootstrapServers)", "topics": "\(catalog.topics.count)"])
        case .bootstrap(let servers):
            embedded = nil
            properties = kafka.merging(KafkaProperties(["bootstrap.servers": servers]))
        }
    }

    /// `bootstrap.servers` of the cluster.
    public var bootstrapServers: String { properties["bootstrap.servers"] ?? "" }
}
