import Foundation
import Testing

@testable import KafkaClient

/// A closed consumer lets go of its librdkafka client: nothing else keeps the handle, and with it librdkafka's
/// threads, alive.
@Suite("Consumer lifetime")
struct ConsumerLifetimeTests {
    @Test("After close, releasing the consumer destroys its client at once (not after close's 30 s timeout)")
    func closedConsumerReleasesItsClient() async throws {
        let broker = try EmbeddedBroker(brokers: 1, logger: testLogger)
        try broker.createTopic("lifetime", partitions: 2)
        var consumer: KafkaConsumer? = try KafkaConsumer(
            groupID: uniqueGroup("lifetime"), properties: broker.clientProperties, logger: testLogger)
        try consumer?.subscribe(["lifetime"])
        _ = try await consumer?.poll(timeout: .milliseconds(200))
        weak let handle = consumer?.handle
        #expect(handle != nil)
        await consumer?.close()
        consumer = nil
        // The close's last work item may still be finishing on its queue.
        let deadline = ContinuousClock.now + .seconds(5)
        while handle != nil && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(handle == nil, "the client outlived its consumer")
    }
}
