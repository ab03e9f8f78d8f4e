import Testing

@testable import KafkaClient

@Suite("Fetch wake-up")
struct FetchWakeupTests {
    @Test("Thresholds are half the effective prefetch limits: distilld's 16 MB default (consumers and readers), or what the properties say")
    func thresholds() throws {
        let defaults = try KafkaConsumer(groupID: uniqueGroup("wake"), properties: KafkaProperties([:]),
                                         logger: testLogger)
        #expect(FetchWakeup(defaults.handle).byteThreshold == 16_384 * 1_000 / 2)
        #expect(FetchWakeup(defaults.handle).messageThreshold == 100_000 / 2)
        let set = try KafkaConsumer(
            groupID: uniqueGroup("wake"),
            properties: KafkaProperties(["queued.max.messages.kbytes": "2000", "queued.min.messages": "300"]),
            logger: testLogger)
        #expect(FetchWakeup(set.handle).byteThreshold == 1_000_000)
        #expect(FetchWakeup(set.handle).messageThreshold == 150)
        let reader = try PartitionReader(properties: KafkaProperties([:]), logger: testLogger)
        #expect(FetchWakeup(reader.handle).byteThreshold == 16_384 * 1_000 / 2)
    }

    /// librdkafka 2.0.2 stops fetching while the prefetch queue is full and looks again only when its broker thread
    /// wakes, at the latest after 1 s. Draining 12 MB through a 1 MB queue without a wake-up idles about a second
    /// per refill (some ten empty 100 ms polls each). With the wake-up the queue is refilled before it runs dry.
    @Test("A backlog larger than the prefetch queue is read without waiting for librdkafka's 1 s wake-up, every record once and in order: group consumer and partition reader",
          arguments: ["consumer", "reader"])
    func backlogThroughSmallQueue(client: String) async throws {
        let broker = try EmbeddedBroker(brokers: 1, logger: testLogger)
        let partitions = 4
        try broker.createTopic("wake", partitions: partitions)
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: testLogger)
        let count = 12_000  // 3 MB a partition: within the embedded broker's 5 MiB
        let produced = deliveredByPartition(
            try await produceSequence(producer, topic: "wake", count: count, valueBytes: 1_000))
        await producer.close()

        var properties = broker.clientProperties
        properties["queued.max.messages.kbytes"] = "1000"
        let tps = (0..<partitions).map { TopicPartition("wake", Int32($0)) }
        let start = Dictionary(uniqueKeysWithValues: tps.map { ($0, KafkaOffset.beginning) })
        let poll: () async throws -> ConsumerBatch
        let wakeups: () -> Int
        let close: () async -> Void
        if client == "consumer" {
            let consumer = try KafkaConsumer(groupID: uniqueGroup("wake"), properties: properties, logger: testLogger)
            try consumer.assign(start)
            poll = { try await consumer.poll(maxMessages: 1024, timeout: .milliseconds(100)) }
            wakeups = { consumer.fetchWakeups }
            close = { await consumer.close() }
        } else {
            let reader = try PartitionReader(properties: properties, logger: testLogger)
            try await reader.assign(start)
            poll = { try await reader.poll(maxMessages: 1024, timeout: .milliseconds(100)) }
            wakeups = { reader.fetchWakeups }
            close = { await reader.close() }
        }

        var read: [Int32: [(offset: Int64, seq: Int)]] = [:]
        var total = 0
        var emptyPolls = 0
        var started = false
        let deadline = ContinuousClock.now + .seconds(120)
        let t0 = ContinuousClock.now
        while total < count && ContinuousClock.now < deadline {
            let batch = try await poll()
            var got = 0
            for case .message(let m) in batch.events {
                read[m.partition, default: []].append((m.offset, sequenceNumber(m)))
                got += 1
            }
            total += got
            if got > 0 { started = true } else if started { emptyPolls += 1 }
        }
        let sent = wakeups()
        print("figure: fetch wake-up (\(client)): \(total) records, \(sent) wake-ups, \(emptyPolls) empty polls, \(ContinuousClock.now - t0)")
        await close()

        #expect(total == count)
        for p in 0..<Int32(partitions) {
            let expected = produced[p] ?? []
            let got = read[p] ?? []
            #expect(got.map(\.offset) == expected.map(\.offset), "partition \(p): offsets")
            #expect(got.map(\.seq) == expected.map(\.seq), "partition \(p): records")
        }
        // 12 MB through a queue woken every 0.5 MB taken in full batches: up to 24 (fewer while one is in flight).
        #expect(sent >= 1, "wake-ups sent: \(sent)")
        // Without the wake-up, at 12 MB: 27-36 empty polls in 4 runs of the consumer, 16 in one of the reader (a 1 s
        // wait is about ten). With it: none in every run seen, CI included.
        #expect(emptyPolls < 8, "empty 100 ms polls while records were waiting: \(emptyPolls)")
    }

    @Test("A consumer that keeps up sends no wake-up: its batches find the queue empty, however much it reads")
    func keepingUpSendsNone() async throws {
        let broker = try EmbeddedBroker(brokers: 1, logger: testLogger)
        try broker.createTopic("steady", partitions: 2)
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: testLogger)
        var properties = broker.clientProperties
        properties["queued.max.messages.kbytes"] = "100"  // a wake-up per 50 KB taken in full batches
        let consumer = try KafkaConsumer(groupID: uniqueGroup("steady"), properties: properties, logger: testLogger)
        try consumer.assign([TopicPartition("steady", 0): KafkaOffset.beginning,
                             TopicPartition("steady", 1): KafkaOffset.beginning])
        var total = 0
        for round in 0..<20 {  // 25 records of 1 KB a round, each round read before the next is sent: 500 KB in all
            _ = try await produceSequence(producer, topic: "steady", count: 25, valueBytes: 1_000)
            let deadline = ContinuousClock.now + .seconds(30)
            var got = 0
            while got < 25 && ContinuousClock.now < deadline {
                got += try await consumer.poll(maxMessages: 1024, timeout: .milliseconds(100)).messages.count
            }
            #expect(got == 25, "round \(round)")
            total += got
        }
        #expect(total == 500)
        #expect(consumer.fetchWakeups == 0)
        await consumer.close()
        await producer.close()
    }
}
