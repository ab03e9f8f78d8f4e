import KafkaClient
import Testing

/// One group member's view in the tests: what it was assigned, what it finished and committed.
private struct Member {
    let consumer: KafkaConsumer
    var assigned: Set<TopicPartition> = []
    /// Records marked done whose commit succeeded: these must never be delivered again.
    var committed: [Int] = []
    /// Records marked done whose commit was refused (they may legitimately come back).
    var uncommitted: [Int] = []

    /// Polls once, marks every record done in order, then commits, as distilld's pipeline does.
    mutating func step(maxMessages: Int = 500) async throws -> [KafkaMessage] {
        let batch = try await consumer.poll(maxMessages: maxMessages, timeout: .milliseconds(100))
        var done: [Int] = []
        for event in batch.events {
            switch event {
            case .assigned(let tps): assigned.formUnion(tps)
            case .revoked(let tps), .lost(let tps): assigned.subtract(tps)
            case .message(let m):
                #expect(assigned.contains(m.topicPartition), "a record arrives only from an assigned partition")
                if (try? consumer.markDone(m)) != nil { done.append(sequenceNumber(m)) }
            case .error: break
            }
        }
        do {
            try await consumer.commit()
            committed += done
        } catch {
            uncommitted += done
        }
        return batch.messages
    }
}

/// Consumer-group behaviour: partitions split between members; a leaver's partitions resume from its commits.
@Suite("Consumer groups on the embedded broker", .serialized)
struct GroupTests {
    @Test("Two consumers split the partitions; when one leaves the other resumes from its committed offsets")
    func splitAndTakeOver() async throws {
        let broker = try EmbeddedBroker(logger: testLogger)
        let topic = "group-split"
        let all = Set((0..<6).map { TopicPartition(topic, Int32($0)) })
        try broker.createTopic(topic, partitions: 6)
        let group = uniqueGroup("split")
        // The mock coordinator reassigns a departed member's partitions only after its session times out. 15 s, not
        // less: with the whole suite starting in parallel, a member starved of CPU for longer than a short session
        // was dropped from every rebalance, and the group never split within the 60 s (seen in clean-clone CI runs).
        var props = broker.clientProperties
        props["session.timeout.ms"] = "15000"
        props["heartbeat.interval.ms"] = "500"
        var a = Member(consumer: try KafkaConsumer(groupID: group, properties: props, logger: testLogger))
        var b = Member(consumer: try KafkaConsumer(groupID: group, properties: props, logger: testLogger))
        try a.consumer.subscribe([topic])
        try b.consumer.subscribe([topic])

        // Phase 1: both join and the group settles on a split.
        let clock = ContinuousClock()
        var end = clock.now + .seconds(120)
        while clock.now < end {
            _ = try await a.step()
            _ = try await b.step()
            if !a.assigned.isEmpty, !b.assigned.isEmpty, a.assigned.union(b.assigned) == all { break }
        }
        #expect(!a.assigned.isEmpty && !b.assigned.isEmpty, "both members got partitions")
        #expect(a.assigned.isDisjoint(with: b.assigned), "no partition is assigned twice")
        #expect(a.assigned.union(b.assigned) == all)
        #expect(Set(a.consumer.assignment) == a.assigned)

        // Phase 2: traffic arrives; each member processes and commits only its own partitions.
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: testLogger)
        let count = 6000
        _ = try await produceSequence(producer, topic: topic, count: count)
        end = clock.now + .seconds(60)
        while clock.now < end && a.committed.count < 1000 {
            _ = try await a.step(maxMessages: 200)
            _ = try await b.step(maxMessages: 200)
        }
        #expect(a.committed.count >= 1000)
        // A receives one more batch that it never finishes, then leaves: those records must go to B.
        let heldByA = try await a.consumer.poll(maxMessages: 50, timeout: .seconds(1)).messages.map(sequenceNumber)
        #expect(!heldByA.isEmpty)
        await a.consumer.close()

        // Phase 3: B takes over A's partitions and reads on from A's committed offsets.
        end = clock.now + .seconds(60)
        while clock.now < end && Set(a.committed + b.committed).count < count {
            _ = try await b.step(maxMessages: 1000)
        }
        #expect(b.assigned == all, "B owns every partition after A left")
        let committedTwice = Set(a.committed).intersection(b.committed).count
        let missing = Set(0..<count).subtracting(a.committed).subtracting(b.committed).count
        #expect(missing == 0, "nothing skipped")
        #expect(committedTwice == 0, "B resumed exactly at A's committed offsets")
        #expect(Set(heldByA).isSubset(of: Set(b.committed)), "A's unfinished records were redelivered to B")
        // Only records whose commit was refused mid-rebalance may have been processed twice.
        let allDone = a.committed + a.uncommitted + b.committed + b.uncommitted
        let repeats = allDone.count - Set(allDone).count
        #expect(repeats <= a.uncommitted.count + b.uncommitted.count)
        await b.consumer.close()
        await producer.close()
    }

    @Test("Seek, pause/resume and lag per partition")
    func seekPauseLag() async throws {
        let broker = try EmbeddedBroker(logger: testLogger)
        let topic = "flow"
        try broker.createTopic(topic, partitions: 1)
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: testLogger)
        let reports = try await produceSequence(producer, topic: topic, count: 100)
        #expect(reports.values.map(\.offset).sorted() == Array(0..<100))

        let consumer = try KafkaConsumer(groupID: uniqueGroup("flow"), properties: broker.clientProperties,
                                         logger: testLogger)
        try consumer.subscribe([topic])
        let tp = TopicPartition(topic, 0)
        var got: [KafkaMessage] = []
        try await pollUntil(consumer, deadline: .seconds(30)) { event in
            if case .message(let m) = event, got.count < 40 { got.append(m) }
        } done: { got.count >= 40 }
        // Only 40 were marked done and committed; the fetch position may be further on.
        try consumer.markDone(got[39])
        try await consumer.commit()
        #expect(try await consumer.committed([tp])[tp] == 40)
        let lag = try await consumer.lag()
        #expect(lag[tp]?.highWatermark == 100)
        #expect(lag[tp].map { $0.lag <= 60 && $0.lag >= 0 } == true)

        try await consumer.seek(tp, to: 90)
        var afterSeek: [Int64] = []
        try await pollUntil(consumer, deadline: .seconds(20)) { event in
            if case .message(let m) = event { afterSeek.append(m.offset) }
        } done: { afterSeek.contains(99) }
        #expect(afterSeek.first == 90, "the next record after a seek is the one sought")
        #expect(try await consumer.lag()[tp]?.lag == 0, "caught up")

        try consumer.pause([tp])
        _ = try await producer.send(ProducerRecord(topic: topic, partition: 0, value: Array("seq-100".utf8)))
        var whilePaused = 0
        for _ in 0..<5 { whilePaused += try await consumer.poll(timeout: .milliseconds(100)).messages.count }
        #expect(whilePaused == 0, "a paused partition delivers nothing")
        try consumer.resume([tp])
        var resumed: [Int64] = []
        try await pollUntil(consumer, deadline: .seconds(20)) { event in
            if case .message(let m) = event { resumed.append(m.offset) }
        } done: { !resumed.isEmpty }
        #expect(resumed == [100])
        await consumer.close()
        await producer.close()
    }

    @Test("High watermarks of many partitions, asked while the consumer fetches: exact, and one round trip for all")
    func highWatermarksInOneRoundTrip() async throws {
        let broker = try EmbeddedBroker(logger: testLogger)
        let topic = "ends"
        try broker.createTopic(topic, partitions: 16)
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: testLogger)
        // Partition p holds p records (partition 0 none).
        for p in 0..<16 {
            for i in 0..<p {
                try producer.send(ProducerRecord(topic: topic, partition: Int32(p), value: Array("r\(i)".utf8))) { _ in }
            }
        }
        try await producer.flush(timeout: .seconds(10))
        let consumer = try KafkaConsumer(groupID: uniqueGroup("ends"), properties: broker.clientProperties,
                                         logger: testLogger)
        let partitions = (0..<16).map { TopicPartition(topic, Int32($0)) }
        try consumer.assign(Dictionary(uniqueKeysWithValues: partitions.map { ($0, KafkaOffset.end) }))
        _ = try await consumer.poll(timeout: .milliseconds(300))  // fetching: a fetch waits at the broker
        let expected = Dictionary(uniqueKeysWithValues: partitions.map { ($0, Int64($0.partition)) })
        #expect(try await consumer.highWatermarks(partitions + [partitions[3]]) == expected, "a repeat is asked once")
        #expect(try await consumer.highWatermarks([]) == [:])

        // 400 ms per response: partition by partition the 16 answers took at least 6.4 s (each also queued behind the
        // consumer's fetch); in one request they fit a 3 s budget with room to spare for a loaded machine.
        try broker.setLatency(broker: 1, milliseconds: 400)
        let started = ContinuousClock.now
        let ends = try await consumer.highWatermarks(partitions, timeout: .seconds(3))
        let took = ContinuousClock.now - started
        print("figure: high watermarks partitions=16 rtt=400ms took=\(took)")
        #expect(ends == expected)
        #expect(took < .seconds(3))
        try broker.setLatency(broker: 1, milliseconds: 0)
        await #expect(throws: KafkaError.self, "a partition the topic does not have") {
            try await consumer.highWatermarks([TopicPartition(topic, 99)], timeout: .seconds(2))
        }
        await consumer.close()
        await producer.close()
    }

    @Test("markDone on a partition that is not assigned is refused with a clear error")
    func markDoneUnassignedFails() async throws {
        let broker = try EmbeddedBroker(logger: testLogger)
        try broker.createTopic("revoked", partitions: 1)
        let consumer = try KafkaConsumer(groupID: uniqueGroup("revoked"), properties: broker.clientProperties,
                                         logger: testLogger)
        try consumer.assign([TopicPartition("revoked", 0): KafkaOffset.beginning])
        let stranger = KafkaMessage(topic: "revoked", partition: 7, offset: 3, value: [])
        let error = #expect(throws: KafkaError.self) { try consumer.markDone(stranger) }
        #expect(error?.kind == .commit)
        #expect(error?.hint.contains("no longer) assigned") == true)
        await consumer.close()
    }
}
