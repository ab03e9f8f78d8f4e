import CRdKafka

// MARK: - TopicPartition

/// One partition of one topic.
public struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (a: Self, b: Self) -> Bool {
        (a.topic, a.partition) < (b.topic, b.partition)
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// Special offsets understood by `seek` and `assign`.
public enum KafkaOffset {
    /// The first offset still retained.
    public static let beginning: Int64 = -2
    /// The offset after the last message.
    public static let end: Int64 = -1
    /// The committed offset of the group (or `auto.offset.reset` when none).
    public static let stored: Int64 = -1000

    /// `count` records before the end of the partition (or its beginning, if it holds fewer).
    public static func tail(_ count: Int64) -> Int64 { distilld_offset_tail(count) }
}

/// A record header.
public struct KafkaHeader: Hashable, Sendable {
    public var name: String
    public var value: [UInt8]?

    public init(_ name: String, _ value: [UInt8]?) {
        self.name = name
        self.value = value
    }

    /// A header whose value is UTF-8 text.
    public init(_ name: String, _ text: String) {
        self.init(name, Array(text.utf8))
    }
}
