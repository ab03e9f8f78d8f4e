import KafkaClient
import Logging

/// Reads partitions from given offsets up to their ends (high watermarks asked of the broker when the read starts),
/// outside any group.
final class TopicReader {
    private let reader: PartitionReader

    init(properties: KafkaProperties, logger: Logger) throws {
        reader = try PartitionReader(properties: properties, logger: logger)
    }

    /// Calls `body` for each record in offset order per partition. Returns false when the end was not reached within
    /// `timeout`.
    func readToEnd(_ starts: [TopicPartition: Int64], timeout: Duration = .seconds(30),
                   _ body: (KafkaMessage) throws -> Void) async throws -> Bool {
        guard !starts.isEmpty else { return true }
        try await reader.assign(starts)
        var remaining: [TopicPartition: Int64] = [:]
        for (tp, high) in try await reader.highWatermarks(Array(starts.keys)) where high > 0 { remaining[tp] = high }
        let deadline = ContinuousClock.now + timeout
        while !remaining.isEmpty && ContinuousClock.now < deadline {
            for m in try await reader.poll(maxMessages: 4096, timeout: .milliseconds(200)).messages
            where starts[m.topicPartition] != nil {
                try body(m)
                if let end = remaining[m.topicPartition], m.offset + 1 >= end { remaining[m.topicPartition] = nil }
            }
        }
        return remaining.isEmpty
    }

    func close() async { await reader.close() }

    /// One read with a reader of its own.
    static func readToEnd(
        properties: KafkaProperties, logger: Logger, _ starts: [TopicPartition: Int64],
        timeout: Duration = .seconds(30), _ body: (KafkaMessage) throws -> Void
    ) async throws -> Bool {
        let reader = try TopicReader(properties: properties, logger: logger)
        do {
            let complete = try await reader.readToEnd(starts, timeout: timeout, body)
            await reader.close()
            return complete
        } catch {
            await reader.close()
            throw error
        }
    }
}
