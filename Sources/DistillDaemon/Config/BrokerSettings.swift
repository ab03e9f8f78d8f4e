import Foundation
import KafkaClient

// MARK: - BrokerSettings

/// Where Kafka is and how to talk to it: the `brokers`, `embedded_brokers`, `topics_file` and `kafka` keys.
public struct BrokerSettings: Sendable, Equatable {
    /// Either the embedded broker or a bootstrap list.
    public enum Brokers: Sendable, Equatable {
        /// librdkafka's mock cluster, started inside this process.
        case embedded(brokers: Int)
        /// A real cluster's `bootstrap.servers`.
        case bootstrap(String)
    }

    public var brokers: Brokers = .embedded(brokers: 1)
    /// Topic definitions to create on the embedded broker.
    public var topicsFile: String = "streams/topics.yaml"
    /// librdkafka properties passed through unchanged; `${env:NAME}` values are resolved at connect time.
    public var kafka: KafkaProperties = KafkaProperties()

    public init(brokers: Brokers = .embedded(brokers: 1), topicsFile: String = "streams/topics.yaml",
                kafka: KafkaProperties = KafkaProperties()) {
        self.brokers = brokers
        self.topicsFile = topicsFile
        self.kafka = kafka
    }

    /// Reads the broker keys from a config document. Other keys are left for their owners.
    static func read(from root: inout YAMLMap) throws(ConfigError) -> BrokerSettings {
        var settings = BrokerSettings()
        let brokersText = try root.string("brokers") ?? "embedded"
        let count = try root.int("embedded_brokers")
        if brokersText == "embedded" {
            let n = count ?? 1
            guard (1...32).contains(n) else {
                throw root.error("embedded_brokers", root.node("embedded_brokers"), "must be between 1 and 32")
            }
            settings.brokers = .embedded(brokers: n)
        } else {
            guard !brokersText.isEmpty, brokersText.split(separator: ",").allSatisfy({ $0.contains(":") }) else {
                throw root.error("brokers", root.node("brokers"),
                                 "expected `embedded` or a list like \"host1:9092,host2:9092\", got '\(brokersText)'")
            }
            if count != nil {
                throw root.error("embedded_brokers", root.node("embedded_brokers"),
                                 "only applies with `brokers: embedded`")
            }
            settings.brokers = .bootstrap(brokersText)
        }
        settings.topicsFile = try root.string("topics_file") ?? settings.topicsFile
        let kafka = KafkaProperties(try root.stringMap("kafka") ?? [:])
        if kafka["bootstrap.servers"] != nil {
            throw root.error("kafka", root.node("kafka"), "set the brokers with the top-level `brokers:` key, "
                             + "not kafka.bootstrap.servers")
        }
        // librdkafka checks every name and value now, so a typo fails at start-up, not at first use.
        do {
            try kafka.validate(for: .producer)
        } catch {
            throw root.error("kafka", root.node("kafka"), error.reason + (error.hint.isEmpty ? "" : " (\(error.hint))"))
        }
        settings.kafka = kafka
        return settings
    }

    /// Parses a YAML document that holds only broker keys (used by tests and `distilld broker --config`).
    public static func parse(_ yaml: String, file: String = "<string>") throws(ConfigError) -> BrokerSettings {
        var root = try YAMLMap.document(yaml, file: file)
        let settings = try read(from: &root)
        try root.finish()
        return settings
    }
}
