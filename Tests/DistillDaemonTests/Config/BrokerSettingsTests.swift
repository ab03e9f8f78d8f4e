import DistillDaemon
import Foundation
import KafkaClient
import Testing

/// The repository root: the nearest folder above this file that holds Package.swift.
let packageRoot: URL = {
    var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while dir.path != "/" && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
        dir = dir.deletingLastPathComponent()
    }
    return dir
}()

/// The broker keys of the config, the topic catalog, and `brokers: embedded`.
@Suite("Broker settings and topic catalog", .hangGuard())
struct BrokerSettingsTests {
    @Test("streams/topics.yaml defines every topic distilld reads or writes")
    func shippedCatalog() throws {
        let catalog = try TopicCatalog.load(path: packageRoot.appendingPathComponent("streams/topics.yaml").path)
        let names = catalog.topics.map(\.spec.name)
        #expect(names == [
            "samples", "labels", "teachers", "distill.alerts", "distill.calibration", "distill.windows",
            "distill.students", "distill.deadletter", "distill.partials", "distill.changelog", "distill.merge",
        ])
        #expect(catalog.topic("distill.merge")?.spec.partitions == 1, "one partition is the merge lease")
        #expect(catalog.topic("distill.partials")?.role == .internal)
        #expect(catalog.topic("samples")?.spec.partitions == 32)
        #expect(catalog.topic("teachers")?.spec.partitions == 1, "one partition keeps the registry in order")
        #expect(catalog.topic("teachers")?.spec.config["cleanup.policy"] == "compact")
        #expect(catalog.topic("distill.alerts")?.role == .output)
        #expect(catalog.topics.allSatisfy { !$0.key.isEmpty && !$0.value.isEmpty }, "every key and value is described")
    }

    @Test("Config errors name the file, line and key", arguments: [
        ("brokers: embedded\nembeded_brokers: 2\n", 2, "embeded_brokers", "unknown key"),
        ("brokers: embedded\nembedded_brokers: 99\n", 2, "embedded_brokers", "between 1 and 32"),
        ("brokers: embedded\nembedded_brokers: two\n", 2, "embedded_brokers", "expected an integer"),
        ("brokers: kafka-1\n", 1, "brokers", "expected `embedded`"),
        ("brokers: \"k:9092\"\nkafka:\n  sasl.pasword: x\n", 3, "kafka", "unknown property 'sasl.pasword'"),
        ("brokers: \"k:9092\"\nkafka:\n  bootstrap.servers: x:1\n", 3, "kafka", "top-level `brokers:`"),
        ("brokers: \"k:9092\"\nkafka:\n  enable.idempotence: perhaps\n", 3, "kafka", "'enable.idempotence'"),
    ])
    func errors(yaml: String, line: Int, key: String, message: String) {
        let error = #expect(throws: ConfigError.self) { try BrokerSettings.parse(yaml, file: "test.yaml") }
        #expect(error?.file == "test.yaml")
        #expect(error?.line == line, "\(error?.description ?? "")")
        #expect(error?.key == key)
        #expect(error?.message.contains(message) == true, "\(error?.description ?? "")")
    }

    @Test("A secret in an invalid kafka: map never appears in the error")
    func secretNotInError() {
        let yaml = "brokers: \"k:9092\"\nkafka:\n  security.protocol: SASL_PLAINTEXT\n  sasl.password: hunter2\n  sasl.mechanisms: NOPE\n"
        let error = #expect(throws: ConfigError.self) { try BrokerSettings.parse(yaml) }
        #expect(error?.description.contains("hunter2") == false)
        #expect(error?.description.contains("NOPE") == true, "\(error?.description ?? "")")
    }

    @Test("Topic catalog errors name the entry and key", arguments: [
        ("topics:\n  - name: a\n    partitions: 0\n", "topics[0].partitions", 3),
        ("topics:\n  - name: a\n    partitons: 3\n", "topics[0].partitons", 3),
        ("topics:\n  - name: 'bad topic'\n", "topics[0].name", 2),
        ("topics:\n  - name: a\n  - name: a\n", "topics[1].name", nil),
        ("topic: []\n", "topics", 1),
    ])
    func catalogErrors(yaml: String, key: String, line: Int?) {
        let error = #expect(throws: ConfigError.self) { try TopicCatalog.parse(yaml) }
        #expect(error?.key == key, "\(error?.description ?? "")")
        if let line { #expect(error?.line == line, "\(error?.description ?? "")") }
    }

    @Test("`brokers: embedded` starts a broker in this process with the catalog's topics")
    func embeddedInProcess() async throws {
        let settings = BrokerSettings(
            brokers: .embedded(brokers: 2), topicsFile: packageRoot.appendingPathComponent("streams/topics.yaml").path)
        let connection = try KafkaConnection(settings)
        let broker = try #require(connection.embedded)
        #expect(connection.bootstrapServers == broker.bootstrapServers)
        #expect(connection.bootstrapServers.split(separator: ",").count == 2)
        let producer = try KafkaProducer(properties: connection.properties)
        let report = try await producer.send(ProducerRecord(topic: "samples", partition: 31, value: Array("{}".utf8)))
        #expect(report.partition == 31, "samples has the catalog's 32 partitions")
        await producer.close()
    }

    @Test("A bootstrap list connects to that cluster and starts nothing")
    func realBrokers() throws {
        let settings = try BrokerSettings.parse("brokers: \"kafka-1:9092,kafka-2:9092\"\nkafka: {client.id: d}\n")
        let connection = try KafkaConnection(settings)
        #expect(connection.embedded == nil)
        #expect(connection.properties["bootstrap.servers"] == "kafka-1:9092,kafka-2:9092")
        #expect(connection.properties["client.id"] == "d")
    }
}
