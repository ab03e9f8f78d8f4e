// MARK: - ConfigError

/// A configuration problem, located by file, line and key, with what to do about it.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file the value came from (or `<string>` for inline YAML).
    public var file: String
    /// 1-based line of the offending key or value, when known.
    public var line: Int?
    /// Dotted path of the key, e.g. `kafka.sasl.password` or `topics[2].partitions`.
    public var key: String
    /// What is wrong and what to do.
    public var message: String

    public init(file: String, line: Int?, key: String, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        return key.isEmpty ? "\(place): \(message)" : "\(place): \(key): \(message)"
    }
}
