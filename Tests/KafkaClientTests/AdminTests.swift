import KafkaClient
import Testing

/// Topic creation: mock API on the embedded broker; Admin API for real brokers.
@Suite("Topic creation")
struct AdminTests {
    @Test("The embedded broker creates topics with the requested partition count")
    func embeddedCreate() async throws {
        let broker = try EmbeddedBroker(brokers: 3, logger: testLogger)
        try broker.createTopics([TopicSpec(name: "made", partitions: 5, replicationFactor: 3)])
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: testLogger)
        let last = try await producer.send(ProducerRecord(topic: "made", partition: 4, value: [1]))
        #expect(last.partition == 4)
        let error = await #expect(throws: KafkaError.self) {
            var props = broker.clientProperties
            props["message.timeout.ms"] = "1500"
            let p = try KafkaProducer(properties: props, logger: testLogger)
            _ = try await p.send(ProducerRecord(topic: "made", partition: 5, value: [1]))
        }
        #expect(error?.code == .unknownPartition, "partition 5 does not exist in a 5-partition topic")
        await producer.close()
    }

    @Test("The Admin API path reports an unanswered CreateTopics as a timeout with advice")
    func adminTimeoutIsClear() async throws {
        // The 2.0.2 mock cluster does not answer CreateTopics, which exercises the Admin path's error handling.
        let broker = try EmbeddedBroker(logger: testLogger)
        let admin = try KafkaAdmin(properties: broker.clientProperties, logger: testLogger)
        do {
            let created = try await admin.createTopics([TopicSpec(name: "via-admin", partitions: 2)],
                                                       timeout: .seconds(2))
            // If a future librdkafka answers, the topic must really exist.
            #expect(created == ["via-admin"])
        } catch {
            #expect(error.kind == .timeout || error.kind == .admin)
            #expect(!error.hint.isEmpty)
        }
    }

    @Test("Invalid topic specs are refused before any request is sent")
    func invalidSpec() async throws {
        let broker = try EmbeddedBroker(logger: testLogger)
        let admin = try KafkaAdmin(properties: broker.clientProperties, logger: testLogger)
        let error = await #expect(throws: KafkaError.self) {
            try await admin.createTopics([TopicSpec(name: "bad", partitions: 0)], timeout: .seconds(2))
        }
        #expect(error?.kind == .admin)
    }
}
