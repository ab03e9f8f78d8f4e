import Foundation
import KafkaClient
import Testing

/// kcat, a separate process and a client nobody here wrote, talks to `distilld broker` through its bootstrap file.
@Suite("Interoperability with kcat through `distilld broker`", .serialized)
struct InteropTests {
    @Test("kcat reads what distilld wrote, distilld reads what kcat wrote, and the broker stops on SIGTERM")
    func kcatBothWays() async throws {
        let kcat = try #require(which("kcat"), "kcat is installed by `make test` (apt-get install kcat)")
        let distilld = try #require(distilldExecutable(), "build the distilld executable first (`swift build`)")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distilld-interop-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let bootstrapFile = dir.appendingPathComponent("bootstrap").path

        let broker = Process()
        broker.executableURL = distilld
        broker.arguments = [
            "broker", "--brokers", "2", "--topics", packageRoot.appendingPathComponent("streams/topics.yaml").path,
            "--bootstrap-file", bootstrapFile, "--log-level", "warning",
        ]
        let brokerOut = Pipe()
        let brokerErr = Pipe()
        broker.standardOutput = brokerOut
        broker.standardError = brokerErr
        try broker.run()
        defer { if broker.isRunning { broker.terminate() } }

        var bootstrap = ""
        for _ in 0..<400 where bootstrap.isEmpty && broker.isRunning {
            bootstrap = (try? String(contentsOfFile: bootstrapFile, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            if bootstrap.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        }
        guard !bootstrap.isEmpty else {
            broker.terminate()
            let err = String(decoding: brokerErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            Issue.record("distilld broker wrote no bootstrap file: \(err)")
            return
        }
        #expect(bootstrap.split(separator: ",").count == 2, "two brokers, two addresses: \(bootstrap)")
        let props = KafkaProperties(["bootstrap.servers": bootstrap, "message.timeout.ms": "15000"])

        // kcat lists the topics `distilld broker` created from streams/topics.yaml.
        let meta = try runProcess(kcat, ["-b", bootstrap, "-L", "-J"])
        #expect(meta.status == 0)
        for topic in ["samples", "labels", "teachers", "distill.alerts", "distill.calibration", "distill.windows",
                      "distill.students", "distill.deadletter"] {
            #expect(meta.out.contains("\"topic\":\"\(topic)\""), "topic \(topic) exists")
        }

        // distilld → kcat, with keys and headers.
        let producer = try KafkaProducer(properties: props, logger: testLogger)
        for i in 0..<50 {
            _ = try await producer.send(ProducerRecord(
                topic: "distill.alerts", partition: 0, key: Array("key-\(i)".utf8), value: Array("{\"n\":\(i)}".utf8),
                headers: [KafkaHeader("reason", "test-\(i)")]))
        }
        await producer.close()
        let read = try runProcess(kcat, [
            "-b", bootstrap, "-C", "-t", "distill.alerts", "-p", "0", "-o", "beginning", "-e", "-q",
            "-f", "%k|%s|%h\\n",
        ])
        #expect(read.status == 0, "kcat: \(read.err)")
        let lines = read.out.split(separator: "\n").map(String.init)
        #expect(lines.count == 50)
        #expect(lines.first == "key-0|{\"n\":0}|reason=test-0")
        #expect(lines.last == "key-49|{\"n\":49}|reason=test-49")

        // kcat → distilld.
        let input = (0..<30).map { "k\($0):label-\($0)" }.joined(separator: "\n") + "\n"
        let write = try runProcess(kcat, ["-b", bootstrap, "-P", "-t", "labels", "-p", "3", "-K", ":"], stdin: input)
        #expect(write.status == 0, "kcat: \(write.err)")
        let consumer = try KafkaConsumer(groupID: uniqueGroup("interop"), properties: props, logger: testLogger)
        try consumer.assign([TopicPartition("labels", 3): KafkaOffset.beginning])
        var got: [KafkaMessage] = []
        try await pollUntil(consumer, deadline: .seconds(20)) { event in
            if case .message(let m) = event { got.append(m) }
        } done: { got.count >= 30 }
        #expect(got.count == 30)
        #expect(got.map { String(decoding: $0.value, as: UTF8.self) } == (0..<30).map { "label-\($0)" })
        #expect(got.map { String(decoding: $0.key ?? [], as: UTF8.self) } == (0..<30).map { "k\($0)" })
        await consumer.close()

        // SIGTERM: clean exit, bootstrap file removed.
        broker.terminate()
        broker.waitUntilExit()
        #expect(broker.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: bootstrapFile))
        let printed = String(decoding: brokerOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(printed.contains("bootstrap.servers=\(bootstrap)"))
    }
}
