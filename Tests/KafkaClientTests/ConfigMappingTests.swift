import Foundation
import KafkaClient
import Logging
import Synchronization
import Testing

/// Captures every log line, to prove secrets never reach a log.
final class CapturingLogHandler: LogHandler, @unchecked Sendable {
    static let lines = Mutex<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        Self.lines.withLock { $0.append("\(event.message) \(event.metadata ?? [:])") }
    }
}

/// Property pass-through and validation, without a broker.
@Suite("librdkafka property mapping")
struct ConfigMappingTests {
    @Test("An unknown property is an error that names it")
    func unknownProperty() {
        let error = #expect(throws: KafkaError.self) {
            try KafkaProperties(["bootstrap.servers": "x:9092", "fetch.wait.max.msec": "10"]).validate(for: .consumer)
        }
        #expect(error?.kind == .config)
        #expect(error?.reason.contains("unknown property 'fetch.wait.max.msec'") == true)
        #expect(error?.hint.contains("CONFIGURATION.md") == true)
    }

    @Test("An invalid value is an error that names the property and the value")
    func invalidValue() {
        let error = #expect(throws: KafkaError.self) {
            try KafkaProperties(["enable.idempotence": "maybe"]).validate(for: .producer)
        }
        #expect(error?.reason.contains("'enable.idempotence'") == true)
        #expect(error?.reason.contains("'maybe'") == true)
    }

    @Test("An invalid secret value is reported without the value")
    func invalidSecretValueRedacted() {
        // sasl.mechanisms is not secret, so use a secret-named property librdkafka validates: none does,
        // hence an unknown secret-looking property, whose value must still not be echoed.
        let props = KafkaProperties(["sasl.password": "hunter2", "security.protocol": "carrier-pigeon"])
        let error = #expect(throws: KafkaError.self) { try props.validate(for: .producer) }
        #expect(error?.reason.contains("security.protocol") == true)
        #expect(error?.description.contains("hunter2") == false)
    }

    @Test("Offset handling properties distilld manages are refused with the reason")
    func managedProperties() {
        let error = #expect(throws: KafkaError.self) {
            try KafkaProperties(["enable.auto.commit": "true"]).validate(for: .consumer)
        }
        #expect(error?.reason.contains("enable.auto.commit") == true)
        #expect(error?.reason.contains("durable") == true)
        // The same property is harmless for a producer, where librdkafka ignores consumer settings.
        #expect(throws: Never.self) { try KafkaProperties(["enable.auto.commit": "true"]).validate(for: .producer) }
    }

    @Test("Secrets are redacted in descriptions and in free text", arguments: [
        "sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret",
        "ssl.key.pem", "sasl.oauthbearer.config",
    ])
    func redaction(key: String) {
        let props = KafkaProperties([key: "s3cr3t-value", "client.id": "distilld"])
        #expect(KafkaProperties.isSecret(key))
        #expect(!props.description.contains("s3cr3t-value"))
        #expect(props.description.contains("\(key)=[redacted]"))
        #expect(props.description.contains("client.id=distilld"))
        #expect(props.redact("login failed for s3cr3t-value!") == "login failed for [redacted]!")
    }

    @Test("Non-secret properties are not redacted")
    func nonSecrets() {
        for key in ["bootstrap.servers", "sasl.username", "ssl.ca.location", "client.id"] {
            #expect(!KafkaProperties.isSecret(key), "\(key)")
        }
    }

    @Test("${env:NAME} values come from the environment; a missing variable names the property, not a value")
    func environment() throws {
        let props = KafkaProperties(["sasl.password": "${env:DISTILLD_TEST_PW}", "client.id": "x"])
        let resolved = try props.resolvingEnvironment(["DISTILLD_TEST_PW": "from-env"])
        #expect(resolved["sasl.password"] == "from-env")
        #expect(resolved["client.id"] == "x")
        let error = #expect(throws: KafkaError.self) { try props.resolvingEnvironment([:]) }
        #expect(error?.reason.contains("sasl.password") == true)
        #expect(error?.reason.contains("DISTILLD_TEST_PW") == true)
    }

    @Test("SASL/SSL properties pass through to librdkafka unchanged")
    func passThrough() throws {
        let props = KafkaProperties([
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "svc", "sasl.password": "pw", "socket.keepalive.enable": "true",
        ])
        try props.validate(for: .consumer)
        try props.validate(for: .producer)
    }

    @Test("A client started with a password and librdkafka debug logging never logs the password")
    func secretsNeverLogged() async throws {
        let broker = try EmbeddedBroker(logger: testLogger)
        var logger = Logger(label: "capture") { _ in CapturingLogHandler() }
        logger.logLevel = .trace
        var props = broker.clientProperties
        props["sasl.password"] = "hunter2-very-secret"
        props["sasl.username"] = "svc"
        props["debug"] = "conf,security,generic"
        let producer = try KafkaProducer(properties: props, logger: logger)
        _ = try? await producer.send(ProducerRecord(topic: "nowhere", value: [1]))
        await producer.close(timeout: .milliseconds(200))
        let lines = CapturingLogHandler.lines.withLock { $0 }
        #expect(!lines.isEmpty, "debug logging produced lines, so the check below means something")
        #expect(!lines.contains { $0.contains("hunter2-very-secret") })
    }
}
