import Foundation
import KafkaClient
import Yams

// MARK: - TopicCatalog

/// The topics of `streams/topics.yaml`: names, partitions, keys and retention.
public struct TopicCatalog: Sendable, Equatable {
    /// One topic's definition.
    public struct Topic: Sendable, Equatable {
        /// Whether distilld reads or writes it.
        public enum Role: String, Sendable { case input, output, `internal` }
        public var spec: TopicSpec
        public var role: Role
        /// What the message key is, for people.
        public var key: String
        /// What the message value is, for people.
        public var value: String
    }

    public var topics: [Topic]

    /// The topic specs to create.
    public var specs: [TopicSpec] { topics.map(\.spec) }

    /// The definition of `name`, if any.
    public func topic(_ name: String) -> Topic? { topics.first { $0.spec.name == name } }

    /// Loads and validates a catalog file.
    public static func load(path: String) throws(ConfigError) -> TopicCatalog {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, line: nil, key: "", message: "cannot read the topics file")
        }
        return try parse(String(decoding: data, as: UTF8.self), file: path)
    }

    /// Parses catalog YAML (`topics:` list of definitions).
    public static func parse(_ yaml: String, file: String = "<string>") throws(ConfigError) -> TopicCatalog {
        var root = try YAMLMap.document(yaml, file: file)
        guard let list = try root.sequence("topics") else {
            throw ConfigError(file: file, line: 1, key: "topics", message: "missing; list the topics under `topics:`")
        }
        try root.finish()
        var topics: [Topic] = []
        for (i, node) in list.enumerated() {
            var m = try YAMLMap(node, path: "topics[\(i)]", file: file)
            guard let name = try m.string("name"), !name.isEmpty else {
                throw m.error("name", nil, "every topic needs a non-empty name")
            }
            guard Self.isValidTopicName(name) else {
                throw m.error("name", m.node("name"), "'\(name)' is not a valid Kafka topic name ([a-zA-Z0-9._-], ≤ 249)")
            }
            let partitions = try m.int("partitions") ?? 1
            guard partitions >= 1 else { throw m.error("partitions", m.node("partitions"), "must be at least 1") }
            let rf = try m.int("replication_factor") ?? 1
            guard rf >= 1 else { throw m.error("replication_factor", m.node("replication_factor"), "must be at least 1") }
            let roleText = try m.string("role") ?? "input"
            guard let role = Topic.Role(rawValue: roleText) else {
                throw m.error("role", m.node("role"), "must be input, output or internal, not '\(roleText)'")
            }
            let topic = Topic(
                spec: TopicSpec(
                    name: name, partitions: partitions, replicationFactor: rf, config: try m.stringMap("config") ?? [:]),
                role: role, key: try m.string("key") ?? "", value: try m.string("value") ?? "")
            try m.finish()
            if topics.contains(where: { $0.spec.name == name }) {
                throw m.error("name", nil, "topic '\(name)' is defined twice")
            }
            topics.append(topic)
        }
        return TopicCatalog(topics: topics)
    }

    static func isValidTopicName(_ name: String) -> Bool {
        name.count <= 249 && name != "." && name != ".."
            && name.utf8.allSatisfy { c in
                (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c == 46 || c == 95 || c == 45
            }
    }
}
