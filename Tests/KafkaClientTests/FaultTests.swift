import Foundation
import KafkaClient
import Testing

/// The embedded broker's fault injection against the idempotent producer and a consumer.
@Suite("Faults on the embedded broker", .serialized)
struct FaultTests {
    @Test("Broker down/up, injected retriable produce errors and a leader move: every record delivered exactly once")
    func exactlyOnceThroughFaults() async throws {
        let broker = try EmbeddedBroker(brokers: 3, logger: testLogger)
        let topic = "faults"
        try broker.createTopic(topic, partitions: 4, replicationFactor: 3)
        for p in Int32(0)..<4 { try broker.moveLeader(topic: topic, partition: p, to: 1 + p % 3) }
        var props = broker.clientProperties
        props["linger.ms"] = "2"
        let producer = try KafkaProducer(properties: props, logger: testLogger)
        let count = 20_000
        let faults = Locked<[String]>([])
        let reports = try await produceSequence(producer, topic: topic, count: count) { seq in
            switch seq {
            case 3000:
                // Retriable errors the broker answers with (no late responses: the mock can store those twice).
                broker.failNextRequests(.produce, with: [
                    .notLeaderForPartition, .leaderNotAvailable, .notEnoughReplicas, .requestTimedOut,
                    .notLeaderForPartition,
                ])
                faults.withLock { $0.append("produce errors") }
            case 8000:
                try broker.moveLeader(topic: topic, partition: 0, to: 2)
                try broker.moveLeader(topic: topic, partition: 1, to: 3)
                faults.withLock { $0.append("leader move") }
            case 12000:
                try broker.setBrokerDown(2)
                faults.withLock { $0.append("broker 2 down") }
            case 12001:
                Thread.sleep(forTimeInterval: 1.0)  // records pile up while broker 2 is away
                try broker.setBrokerUp(2)
            default: break
            }
        }
        #expect(faults.withLock { $0.count } == 3)
        #expect(reports.count == count, "every record has a successful delivery report")
        #expect(Set(reports.values.map { "\($0.partition)/\($0.offset)" }).count == count,
                "no two records were stored at the same place")

        let consumer = try KafkaConsumer(groupID: uniqueGroup("faults"), properties: broker.clientProperties,
                                         logger: testLogger)
        try consumer.assign(Dictionary(uniqueKeysWithValues: (0..<4).map {
            (TopicPartition(topic, $0), KafkaOffset.beginning)
        }))
        var seqs: [Int] = []
        var offsetsByPartition: [Int32: [Int64]] = [:]
        try await pollUntil(consumer, deadline: .seconds(60)) { event in
            if case .message(let m) = event {
                seqs.append(sequenceNumber(m))
                offsetsByPartition[m.partition, default: []].append(m.offset)
            }
        } done: { seqs.count >= count }
        // Wait a moment for anything stored twice to show up.
        for _ in 0..<5 { seqs += try await consumer.poll(timeout: .milliseconds(100)).messages.map(sequenceNumber) }
        #expect(seqs.count == count, "stored exactly once: \(seqs.count) records read for \(count) produced")
        #expect(Set(0..<count).subtracting(seqs).isEmpty, "none lost")
        for (p, offsets) in offsetsByPartition {
            #expect(offsets == offsets.sorted(), "partition \(p) read in order")
        }
        await consumer.close()
        await producer.close()
    }

    @Test("A consumer rides out a broker outage and injected fetch errors without losing or repeating records")
    func consumerThroughOutage() async throws {
        let broker = try EmbeddedBroker(brokers: 2, logger: testLogger)
        let topic = "outage"
        try broker.createTopic(topic, partitions: 2, replicationFactor: 2)
        try broker.moveLeader(topic: topic, partition: 0, to: 1)
        try broker.moveLeader(topic: topic, partition: 1, to: 2)
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: testLogger)
        _ = try await produceSequence(producer, topic: topic, count: 4000)
        let consumer = try KafkaConsumer(groupID: uniqueGroup("outage"), properties: broker.clientProperties,
                                         logger: testLogger)
        try consumer.subscribe([topic])
        var seqs: [Int] = []
        var faulted = false
        try await pollUntil(consumer, deadline: .seconds(90)) { event in
            if case .message(let m) = event {
                seqs.append(sequenceNumber(m))
                try consumer.markDone(m)
            }
        } done: {
            if !faulted && seqs.count >= 1000 {
                faulted = true
                try? broker.setBrokerDown(2)
                broker.failNextRequests(.fetch, with: [.notLeaderForPartition, .networkException, .requestTimedOut])
                Thread.sleep(forTimeInterval: 1.0)
                try? broker.setBrokerUp(2)
            }
            return seqs.count >= 4000
        }
        try await consumer.commit()
        #expect(faulted)
        #expect(seqs.count == 4000)
        #expect(Set(0..<4000).subtracting(seqs).isEmpty)
        await consumer.close()
        await producer.close()
    }
}
