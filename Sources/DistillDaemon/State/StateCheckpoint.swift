// MARK: - StateTopicPartition

/// A Kafka topic partition, the key of a checkpoint's covered input offsets.
public struct StateTopicPartition: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The topic name.
    public var topic: String
    /// The partition number.
    public var partition: Int32

    /// Creates a topic partition key.
    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    /// Orders by topic, then partition; the order offsets are encoded in, so equal checkpoints encode equally.
    public static func < (lhs: StateTopicPartition, rhs: StateTopicPartition) -> Bool {
        lhs.topic != rhs.topic ? lhs.topic < rhs.topic : lhs.partition < rhs.partition
    }

    /// `topic/partition`.
    public var description: String { "\(topic)/\(partition)" }
}

// MARK: - StateSection

/// One named blob of checkpointed state (windows, registry, student weights...). The store does not
/// interpret the bytes; the component that owns the section encodes and decodes them.
public struct StateSection: Sendable, Equatable {
    /// A unique, non-empty name such as `windows` or `student.weights`.
    public var name: String
    /// The section's opaque content.
    public var bytes: [UInt8]

    /// Creates a section.
    public init(name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }
}

// MARK: - StateCheckpoint

/// Everything distilld needs to resume exactly where it stopped: named state sections plus the input offsets
/// that state covers, and metadata. An offset here is the *next* offset to consume on that partition.
public struct StateCheckpoint: Sendable, Equatable {
    /// Strictly increasing across the checkpoints one state directory holds; `StateStore.write` enforces it.
    public var sequence: UInt64
    /// When the daemon took the checkpoint, in milliseconds since the Unix epoch.
    public var createdAtMilliseconds: Int64
    /// The revision (e.g. hash) of the configuration in force when the checkpoint was taken.
    public var configRevision: String
    /// The distilld version that wrote the checkpoint, for diagnostics.
    public var writerVersion: String
    /// Input offsets covered by the sections: for each partition, the next offset to consume.
    public var offsets: [StateTopicPartition: Int64]
    /// The state, as named sections in the order the daemon gave them.
    public var sections: [StateSection]

    /// Creates a checkpoint.
    public init(
        sequence: UInt64,
        createdAtMilliseconds: Int64,
        configRevision: String,
        writerVersion: String,
        offsets: [StateTopicPartition: Int64],
        sections: [StateSection]
    ) {
        self.sequence = sequence
        self.createdAtMilliseconds = createdAtMilliseconds
        self.configRevision = configRevision
        self.writerVersion = writerVersion
        self.offsets = offsets
        self.sections = sections
    }

    /// The bytes of the section called `name`, or nil when there is none.
    public func section(named name: String) -> [UInt8]? {
        sections.first { $0.name == name }?.bytes
    }

    /// The total size of the sections' bytes.
    public var sectionBytes: Int {
        sections.reduce(0) { $0 + $1.bytes.count }
    }
}

// MARK: - Description

extension StateCheckpoint: CustomStringConvertible {
    /// A one-line summary (sections by name, size and CRC-32C); never the bytes, which may be megabytes.
    public var description: String {
        let parts = sections.map { section in
            let crc = String(StateCRC32C.checksum(section.bytes), radix: 16)
            return "\(section.name): \(section.bytes.count) B crc \(crc)"
        }
        let covered = offsets.sorted { $0.key < $1.key }.map { "\($0.key)@\($0.value)" }
        return "StateCheckpoint(seq \(sequence), created \(createdAtMilliseconds) ms, config \(configRevision), "
            + "writer \(writerVersion), offsets [\(covered.joined(separator: ", "))], "
            + "sections [\(parts.joined(separator: "; "))])"
    }
}
