import CRdKafka
import Foundation
import Testing

@testable import KafkaClient

/// Reading partitions back outside any group: exactly the records the producer was told about, from the offsets
/// asked for, with no group subsystem in the client.
@Suite("Partition reader", .serialized)
struct PartitionReaderTests {
    /// A broker with topic "readback" (4 partitions, 2,000 records) and what the producer was told per partition.
    static func readback() async throws -> (EmbeddedBroker, [Int32: [(offset: Int64, seq: Int)]]) {
        let broker = try EmbeddedBroker(brokers: 1, logger: testLogger)
        try broker.createTopic("readback", partitions: 4)
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: testLogger)
        let reports = try await produceSequence(producer, topic: "readback", count: 2_000)
        await producer.close()
        return (broker, deliveredByPartition(reports))
    }

    /// Polls `reader` until it has returned `count` records or 30 s pass.
    static func read(_ reader: PartitionReader, count: Int) async throws -> [KafkaMessage] {
        var out: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while out.count < count && ContinuousClock.now < deadline {
            out += try await reader.poll(maxMessages: 500, timeout: .milliseconds(100)).messages
        }
        return out
    }

    @Test("From the beginning, an absolute offset and a tail: the producer's records at those offsets, in order, once")
    func readsFromOffsets() async throws {
        let (broker, expected) = try await Self.readback()
        let reader = try PartitionReader(properties: broker.clientProperties, logger: testLogger)
        let p0 = expected[0]!, p1 = expected[1]!, p2 = expected[2]!
        let starts = [TopicPartition("readback", 0): KafkaOffset.beginning,
                      TopicPartition("readback", 1): p1[p1.count / 2].offset,
                      TopicPartition("readback", 2): KafkaOffset.tail(10)]
        try await reader.assign(starts)
        let want = p0.count + (p1.count - p1.count / 2) + 10
        let got = try await Self.read(reader, count: want)
        #expect(got.count == want)
        let byPartition = Dictionary(grouping: got, by: \.partition)
        #expect(byPartition[3] == nil, "a partition not asked for is not read")
        #expect(byPartition[0]!.map { Int($0.offset) } == p0.map { Int($0.offset) })
        #expect(byPartition[0]!.map(sequenceNumber) == p0.map(\.seq))
        #expect(byPartition[1]!.map(sequenceNumber) == p1[(p1.count / 2)...].map(\.seq))
        #expect(byPartition[2]!.map(sequenceNumber) == p2.suffix(10).map(\.seq))
        // Nothing more arrives: every record came once.
        #expect(try await reader.poll(timeout: .milliseconds(300)).messages.isEmpty)
        await reader.close()
    }

    @Test("Assigning again replaces what was read: no record of the earlier partitions or offsets comes back")
    func reassignReplaces() async throws {
        let (broker, expected) = try await Self.readback()
        let reader = try PartitionReader(properties: broker.clientProperties, logger: testLogger)
        try await reader.assign([TopicPartition("readback", 0): KafkaOffset.beginning])
        // Only a few records read: the rest of partition 0 may already be queued locally.
        _ = try await reader.poll(maxMessages: 5, timeout: .seconds(5))
        let p1 = expected[1]!
        let from = p1[p1.count - 20].offset
        try await reader.assign([TopicPartition("readback", 1): from])
        let got = try await Self.read(reader, count: 20)
        #expect(got.count == 20)
        #expect(got.allSatisfy { $0.partition == 1 && $0.offset >= from })
        #expect(got.map(sequenceNumber) == p1.suffix(20).map(\.seq))
        #expect(try await reader.poll(timeout: .milliseconds(300)).messages.isEmpty)
        await reader.close()
    }

    @Test("No consumer group: the client has no group (a configured group.id is dropped); high watermarks and partition counts come from the broker")
    func noGroup() async throws {
        let (broker, expected) = try await Self.readback()
        let props = broker.clientProperties.merging(KafkaProperties(["group.id": "configured"]))
        let reader = try PartitionReader(properties: props, logger: testLogger)
        #expect(rd_kafka_consumer_group_metadata(reader.handle.pointer) == nil)
        let consumer = try KafkaConsumer(groupID: uniqueGroup("compare"), properties: props, logger: testLogger)
        let metadata = rd_kafka_consumer_group_metadata(consumer.handle.pointer)
        #expect(metadata != nil, "the check can tell a group consumer")
        rd_kafka_consumer_group_metadata_destroy(metadata)
        await consumer.close()

        let partitions = (0..<4).map { TopicPartition("readback", Int32($0)) }
        let highs = try await reader.highWatermarks(partitions)
        for tp in partitions { #expect(highs[tp] == expected[tp.partition]!.last!.offset + 1) }
        #expect(try await reader.partitionCount(of: "readback") == 4)
        await reader.close()
        await #expect(throws: KafkaError.self) { try await reader.poll() }
        await #expect(throws: KafkaError.self) { try await reader.assign([partitions[0]: 0]) }
    }

    @Test("A released reader's client is destroyed, closed or not")
    func releasedReaderLetsGo() async throws {
        let (broker, _) = try await Self.readback()
        for closeFirst in [true, false] {
            var reader: PartitionReader? = try PartitionReader(properties: broker.clientProperties, logger: testLogger)
            try await reader?.assign([TopicPartition("readback", 0): KafkaOffset.beginning])
            _ = try await reader?.poll(maxMessages: 10, timeout: .seconds(5))
            weak let handle = reader?.handle
            #expect(handle != nil)
            if closeFirst { await reader?.close() }
            reader = nil
            let deadline = ContinuousClock.now + .seconds(5)
            while handle != nil && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(handle == nil, "closed first: \(closeFirst)")
        }
    }

    @Test("A partition that does not exist is reported as a client error; the others still read")
    func unknownPartition() async throws {
        let (broker, expected) = try await Self.readback()
        let reader = try PartitionReader(properties: broker.clientProperties, logger: testLogger)
        try await reader.assign([TopicPartition("readback", 0): KafkaOffset.beginning,
                                 TopicPartition("readback", 9): KafkaOffset.beginning])
        let messages = try await Self.read(reader, count: expected[0]!.count)
        #expect(messages.map(sequenceNumber) == expected[0]!.map(\.seq))
        let deadline = ContinuousClock.now + .seconds(10)
        while reader.clientErrors.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(reader.clientErrors.contains { $0.code == .unknownPartition && $0.reason.contains("readback [9]") })
        await reader.close()
    }
}
