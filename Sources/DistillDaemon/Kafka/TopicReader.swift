import KafkaClient
import Logging

/// Reads partitions from given offsets up to their ends (high watermarks when the read starts), outside any group.
enum TopicReader {
    /// Calls `body` for each record in offset order per partition. Returns false when the end was not reached within
    /// `timeout`.
    static func readToEnd(
        _ starts: [TopicPartition: Int64], group: String, properties: KafkaProperties, logger: Logger,
        timeout: Duration = .seconds(30), _ body: (KafkaMessage) throws -> Void
    ) async throws -> Bool {
        guard !starts.isEmpty else { return true }
        let reader = try KafkaConsumer(groupID: group, properties: properties, logger: logger)
        defer { Task { await reader.close() } }
        try reader.assign(starts)
        var remaining: [TopicPartition: Int64] = [:]
        for (tp, lag) in try await reader.lag() where lag.highWatermark > 0 {
            remaining[tp] = lag.highWatermark
        }
        let deadline = ContinuousClock.now + timeout
        while !remaining.isEmpty && ContinuousClock.now < deadline {
            for m in try await reader.poll(maxMessages: 4096, timeout: .milliseconds(200)).messages {
                try body(m)
                if let end = remaining[m.topicPartition], m.offset + 1 >= end { remaining[m.topicPartition] = nil }
            }
        }
        return remaining.isEmpty
    }
}
