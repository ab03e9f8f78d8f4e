import Testing

@testable import KafkaClient

@Suite("Consumer lag")
struct LagTests {
    @Test("Lag of a fresh assignment, before any fetch: each partition's high watermark minus the group's committed offset (or its first offset)")
    func freshAssignment() async throws {
        let broker = try EmbeddedBroker(brokers: 1, logger: testLogger)
        try broker.createTopic("lag", partitions: 4)
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: testLogger)
        let produced = deliveredByPartition(try await produceSequence(producer, topic: "lag", count: 400))
        await producer.close()
        let group = uniqueGroup("lag")
        let tps = (0..<4).map { TopicPartition("lag", Int32($0)) }

        let committer = try KafkaConsumer(groupID: group, properties: broker.clientProperties, logger: testLogger)
        try committer.assign([tps[0]: 0, tps[1]: 0])
        try committer.markDone([tps[0]: 5, tps[1]: 10])
        try await committer.commit()
        await committer.close()

        let consumer = try KafkaConsumer(groupID: group, properties: broker.clientProperties, logger: testLogger)
        try consumer.assign(Dictionary(uniqueKeysWithValues: tps.map { ($0, KafkaOffset.stored) }))
        let lags = try await consumer.lag()
        #expect(lags.count == 4)
        let start: [Int64] = [5, 10, 0, 0]
        for tp in tps {
            let high = Int64(produced[tp.partition]!.count)
            #expect(lags[tp] == PartitionLag(position: start[Int(tp.partition)], highWatermark: high), "\(tp)")
        }
        await consumer.close()
    }
}
