import Foundation
import KafkaClient
import Testing

/// Produce → consume through the embedded broker: nothing lost, nothing doubled, order kept per partition.
@Suite("Delivery through the embedded broker", .serialized)
struct DeliveryTests {
    @Test("100,000 records with delivery results, consumed by a group: none lost, none duplicated, order per partition")
    func hundredThousandExactlyOnce() async throws {
        let broker = try EmbeddedBroker(brokers: 1, logger: testLogger)
        try broker.createTopic("delivery", partitions: 8)
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: testLogger)
        let count = 100_000
        let reports = try await produceSequence(producer, topic: "delivery", count: count)
        #expect(reports.count == count)

        // What the producer was told, per partition, in offset order.
        let expected = deliveredByPartition(reports)
        #expect(expected.count == 8, "the key spreads records over all 8 partitions")
        // Same-key records are produced in sequence order, so delivery offsets must be in sequence order per key.
        for (_, list) in expected {
            var lastSeqByKey: [Int: Int] = [:]
            for (_, seq) in list {
                if let last = lastSeqByKey[seq % 97] { #expect(last < seq) }
                lastSeqByKey[seq % 97] = seq
            }
        }

        let consumer = try KafkaConsumer(groupID: uniqueGroup("delivery"), properties: broker.clientProperties,
                                         logger: testLogger)
        try consumer.subscribe(["delivery"])
        var seen: [Int32: [(offset: Int64, seq: Int)]] = [:]
        var total = 0
        try await pollUntil(consumer, deadline: .seconds(120)) { event in
            if case .message(let m) = event {
                seen[m.partition, default: []].append((m.offset, sequenceNumber(m)))
                total += 1
                try consumer.markDone(m)
            }
        } done: { total >= count }
        try await consumer.commit()

        let allSeqs = seen.values.flatMap { $0.map(\.seq) }
        #expect(allSeqs.count == count, "consumed exactly as many as produced")
        #expect(Set(allSeqs).count == count, "no duplicates")
        for (p, list) in expected {
            let got = seen[p] ?? []
            #expect(got.map(\.offset) == list.map(\.offset), "partition \(p): offsets as reported at delivery")
            #expect(got.map(\.seq) == list.map(\.seq), "partition \(p): records in produce order")
        }
        let committed = try await consumer.committed((0..<8).map { TopicPartition("delivery", $0) })
        for (p, list) in expected {
            #expect(committed[TopicPartition("delivery", p)] == list.last!.offset + 1, "committed past the last done")
        }
        await consumer.close()
        await producer.close()
    }

    @Test("pollOnThisThread: a consumer created and polled on a thread of its own gets every record once, in order")
    func pollOnAThreadOfItsOwn() async throws {
        let broker = try EmbeddedBroker(brokers: 1, logger: testLogger)
        try broker.createTopic("own-thread", partitions: 4)
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: testLogger)
        let count = 5_000
        let reports = try await produceSequence(producer, topic: "own-thread", count: count)
        await producer.close()
        let properties = broker.clientProperties
        let group = uniqueGroup("own-thread")
        // The thread creates, subscribes and polls the consumer (as a pinned benchmark loop does), then hands it back.
        let outcome: (KafkaConsumer?, [Int32: [(offset: Int64, seq: Int)]], String?) = await withCheckedContinuation {
            continuation in
            Thread {
                do {
                    let consumer = try KafkaConsumer(groupID: group, properties: properties, logger: testLogger)
                    try consumer.subscribe(["own-thread"])
                    var seen: [Int32: [(offset: Int64, seq: Int)]] = [:]
                    var total = 0
                    let deadline = Date().addingTimeInterval(60)
                    while total < count && Date() < deadline {
                        for m in try consumer.pollOnThisThread(maxMessages: 512, timeout: .milliseconds(100)).messages {
                            seen[m.partition, default: []].append((m.offset, sequenceNumber(m)))
                            total += 1
                        }
                    }
                    continuation.resume(returning: (consumer, seen, nil))
                } catch {
                    continuation.resume(returning: (nil, [:], "\(error)"))
                }
            }.start()
        }
        let (consumer, seen, failure) = outcome
        #expect(failure == nil)
        let expected = deliveredByPartition(reports)
        #expect(seen.values.map(\.count).reduce(0, +) == count)
        for (p, list) in expected {
            #expect(seen[p]?.map(\.seq) == list.map(\.seq), "partition \(p): every record once, in produce order")
        }
        // Closed from the cooperative pool once the thread is done with it.
        await consumer?.close()
        #expect(throws: KafkaError.self, "a closed consumer refuses to poll") {
            _ = try consumer?.pollOnThisThread(timeout: .zero)
        }
    }

    @Test("Headers, keys and explicit partitions round-trip; delivery reports name the stored offset")
    func headersAndKeys() async throws {
        let broker = try EmbeddedBroker(logger: testLogger)
        try broker.createTopic("hdr", partitions: 3)
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: testLogger)
        let report = try await producer.send(ProducerRecord(
            topic: "hdr", partition: 2, key: Array("the-key".utf8), value: [0, 1, 2, 255],
            headers: [KafkaHeader("reason", "not_finite"), KafkaHeader("empty", nil)], timestamp: 1_795_434_123_456))
        #expect(report.partition == 2)
        #expect(report.offset == 0)
        let consumer = try KafkaConsumer(groupID: uniqueGroup("hdr"), properties: broker.clientProperties,
                                         logger: testLogger)
        try consumer.assign([TopicPartition("hdr", 2): KafkaOffset.beginning])
        var got: KafkaMessage?
        try await pollUntil(consumer, deadline: .seconds(20)) { event in
            if case .message(let m) = event { got = m }
        } done: { got != nil }
        let m = try #require(got)
        #expect(m.key == Array("the-key".utf8))
        #expect(m.value == [0, 1, 2, 255])
        #expect(m.header("reason") == "not_finite")
        #expect(m.headers.contains(KafkaHeader("empty", nil)))
        #expect(m.timestamp == 1_795_434_123_456)
        await consumer.close()
    }

    @Test("A record for a topic that does not exist fails its delivery with a clear error")
    func unknownTopicFails() async throws {
        let broker = try EmbeddedBroker(logger: testLogger)
        var props = broker.clientProperties
        props["message.timeout.ms"] = "2000"
        props["allow.auto.create.topics"] = "false"
        let producer = try KafkaProducer(properties: props, logger: testLogger)
        broker.setTopicError("nope", .unknownTopicOrPartition)
        let error = await #expect(throws: KafkaError.self) {
            _ = try await producer.send(ProducerRecord(topic: "nope", value: Array("x".utf8)))
        }
        #expect(error?.kind == .delivery)
        #expect(error?.code == .unknownTopicOrPartition || error?.code == .messageTimedOut)
        #expect(error?.hint.isEmpty == false, "every error says what to do")
        await producer.close(timeout: .seconds(1))
    }
}
