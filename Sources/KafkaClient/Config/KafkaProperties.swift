import CRdKafka
import Foundation
import Logging

// MARK: - KafkaProperties

/// librdkafka properties passed through unchanged (the `kafka:` map in distilld's config), so SASL, SSL and every
/// tuning knob work without distilld knowing them. Secret values never appear in `description`, logs or errors.
public struct KafkaProperties: Sendable, Equatable, CustomStringConvertible {
    /// The raw properties, secrets included. Do not log this; log `redacted` or `description`.
    public private(set) var values: [String: String]

    /// Creates a property set from a librdkafka `[name: value]` map.
    public init(_ values: [String: String] = [:]) {
        self.values = values
    }

    /// The value of one property.
    public subscript(key: String) -> String? {
        get { values[key] }
        set { values[key] = newValue }
    }

    /// A copy where the keys of `overrides` replace ours.
    public func merging(_ overrides: KafkaProperties) -> KafkaProperties {
        KafkaProperties(values.merging(overrides.values) { _, new in new })
    }

    /// A copy with defaults added only where the caller set nothing.
    public func withDefaults(_ defaults: [String: String]) -> KafkaProperties {
        KafkaProperties(values.merging(defaults) { mine, _ in mine })
    }

    // MARK: Secrets

    /// Whether a property holds a secret: passwords, private keys, tokens, JAAS and OAuth configs.
    public static func isSecret(_ key: String) -> Bool {
        let k = key.lowercased()
        return k.contains("password") || k.contains("secret") || k.contains("token") || k == "ssl.key.pem"
            || k == "sasl.oauthbearer.config" || k.hasPrefix("sasl.jaas") || k == "ssl_key"
            || k.hasSuffix(".key.pem")
    }

    /// The text that replaces secret values.
    public static let redactionMark = "[redacted]"

    /// The properties with secret values replaced by `[redacted]`.
    public var redacted: [String: String] {
        var out = values
        for key in values.keys where Self.isSecret(key) { out[key] = Self.redactionMark }
        return out
    }

    /// The values of secret properties (non-empty ones), for scrubbing free text such as librdkafka's messages.
    public var secretValues: [String] {
        values.compactMap { Self.isSecret($0.key) && !$0.value.isEmpty ? $0.value : nil }
    }

    /// `text` with every occurrence of a secret value replaced by `[redacted]`.
    public func redact(_ text: String) -> String {
        var out = text
        for secret in secretValues { out = out.replacingOccurrences(of: secret, with: Self.redactionMark) }
        return out
    }

    public var description: String {
        let pairs = redacted.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return "{" + pairs.joined(separator: ", ") + "}"
    }

    // MARK: Environment

    /// Resolves `${env:NAME}` references, so config files can take secrets from the environment.
    /// A reference to an unset variable is an error naming the property and the variable (never the value).
    public func resolvingEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(KafkaError) -> KafkaProperties {
        var out = self
        for (key, value) in values where value.hasPrefix("${env:") && value.hasSuffix("}") {
            let name = String(value.dropFirst(6).dropLast())
            guard let resolved = environment[name] else {
                throw KafkaError(
                    .config, reason: "property '\(key)' refers to environment variable \(name), which is not set",
                    hint: "export \(name) before starting distilld, or set the property directly")
            }
            out.values[key] = resolved
        }
        return out
    }

    // MARK: Validation

    /// Checks every property against librdkafka's own table for a client of `role`, without connecting.
    /// Unknown names, invalid values and properties that distilld manages itself are errors.
    public func validate(for role: KafkaClientRole) throws(KafkaError) {
        _ = try NativeConf(self, role: role)
        // Some checks (SASL mechanism, SSL files, cross-property rules) happen only when a client is created.
        // Create one that knows no brokers, so nothing connects, and throw it away.
        var offline = self
        offline["bootstrap.servers"] = nil
        offline["log_level"] = "0"
        var quiet = Logger(label: "distilld.kafka.validate")
        quiet.logLevel = .critical
        _ = try RdKafkaHandle(role == .consumer ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER, properties: offline,
                              role: role, logger: quiet)
    }
}

/// What kind of client a property set configures; some properties are managed by distilld per role.
public enum KafkaClientRole: String, Sendable {
    case producer, consumer, admin

    /// Properties distilld sets itself, with the reason a user may not override them.
    var managed: [String: String] {
        switch self {
        case .consumer:
            return [
                "enable.auto.commit": "distilld commits offsets only after the outputs derived from them are durable",
                "enable.auto.offset.store": "distilld stores offsets only for messages its caller marks done",
            ]
        case .producer, .admin:
            return [:]
        }
    }
}

// MARK: - NativeConf

/// Owns an `rd_kafka_conf_t` until `rd_kafka_new` takes it.
final class NativeConf {
    private(set) var pointer: OpaquePointer?

    init(_ properties: KafkaProperties, role: KafkaClientRole) throws(KafkaError) {
        guard let conf = rd_kafka_conf_new() else {
            throw KafkaError(.config, reason: "librdkafka could not allocate a configuration")
        }
        pointer = conf
        for key in properties.values.keys.sorted() {
            if let why = role.managed[key] {
                throw KafkaError(
                    .config, reason: "property '\(key)' cannot be set for a \(role.rawValue): \(why)",
                    hint: "remove '\(key)' from the kafka: map")
            }
            try set(key, properties.values[key]!, redactingWith: properties)
        }
    }

    /// Sets one property; librdkafka's message is scrubbed of secrets before it reaches an error.
    func set(_ key: String, _ value: String, redactingWith properties: KafkaProperties = .init()) throws(KafkaError) {
        var errstr = [CChar](repeating: 0, count: 512)
        let result = rd_kafka_conf_set(pointer, key, value, &errstr, errstr.count)
        guard result != RD_KAFKA_CONF_OK else { return }
        let message = properties.redact(errstr.text)
        if result == RD_KAFKA_CONF_UNKNOWN {
            throw KafkaError(
                .config, reason: "unknown property '\(key)': \(message)",
                hint: "check the spelling against librdkafka 2.0.2's CONFIGURATION.md")
        }
        let shown = KafkaProperties.isSecret(key) ? KafkaProperties.redactionMark : "'\(value)'"
        throw KafkaError(
            .config, reason: "invalid value \(shown) for property '\(key)': \(message)",
            hint: "see librdkafka 2.0.2's CONFIGURATION.md for the allowed values")
    }

    /// Hands the configuration to `rd_kafka_new`, which owns it on success.
    func release() -> OpaquePointer? {
        defer { pointer = nil }
        return pointer
    }

    deinit {
        if let pointer { rd_kafka_conf_destroy(pointer) }
    }
}
