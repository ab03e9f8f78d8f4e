// MARK: - TopicSpec

/// A topic distilld needs: its name, partitions and topic-level config (retention, cleanup policy...).
public struct TopicSpec: Sendable, Hashable {
    public var name: String
    public var partitions: Int
    public var replicationFactor: Int
    /// Topic-level properties such as `retention.ms` or `cleanup.policy`; ignored by the embedded broker.
    public var config: [String: String]

    public init(name: String, partitions: Int, replicationFactor: Int = 1, config: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.config = config
    }
}
