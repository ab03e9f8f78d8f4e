import Foundation
import Yams

// MARK: - YAMLMap

/// Reads one YAML mapping strictly: typed getters that report file, line and key, and `finish()` that rejects
/// keys nobody asked for (unknown keys are errors, not silence).
struct YAMLMap {
    let mapping: Node.Mapping
    let path: String
    let file: String
    private var read: Set<String> = []

    init(_ node: Node, path: String, file: String) throws(ConfigError) {
        guard let mapping = node.mapping else {
            throw ConfigError(file: file, line: node.mark?.line, key: path, message: "expected a mapping")
        }
        self.mapping = mapping
        self.path = path
        self.file = file
    }

    /// Parses a whole document whose root is a mapping.
    static func document(_ yaml: String, file: String) throws(ConfigError) -> YAMLMap {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigError(file: file, line: nil, key: "", message: "not valid YAML: \(error)")
        }
        guard let root else { throw ConfigError(file: file, line: 1, key: "", message: "the file is empty") }
        return try YAMLMap(root, path: "", file: file)
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func error(_ key: String, _ node: Node?, _ message: String) -> ConfigError {
        ConfigError(file: file, line: (node?.mark ?? mapping.mark)?.line, key: keyPath(key), message: message)
    }

    /// The raw node for `key`, marking it as known.
    mutating func node(_ key: String) -> Node? {
        read.insert(key)
        return mapping[Node(key)]
    }

    mutating func string(_ key: String) throws(ConfigError) -> String? {
        guard let n = node(key) else { return nil }
        guard let s = n.scalar?.string else { throw error(key, n, "expected a string") }
        return s
    }

    mutating func int(_ key: String) throws(ConfigError) -> Int? {
        guard let n = node(key) else { return nil }
        guard let v = n.int else { throw error(key, n, "expected an integer, got '\(n.scalar?.string ?? "?")'") }
        return v
    }

    mutating func double(_ key: String) throws(ConfigError) -> Double? {
        guard let n = node(key) else { return nil }
        guard let v = n.float, v.isFinite else {
            throw error(key, n, "expected a finite number, got '\(n.scalar?.string ?? "?")'")
        }
        return v
    }

    mutating func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let n = node(key) else { return nil }
        guard let v = n.bool else { throw error(key, n, "expected true or false, got '\(n.scalar?.string ?? "?")'") }
        return v
    }

    /// A duration such as `500ms`, `30s`, `5m`, `1h`, `14d` (a bare integer is milliseconds), in milliseconds.
    mutating func duration(_ key: String) throws(ConfigError) -> Int64? {
        guard let n = node(key) else { return nil }
        guard let text = n.scalar?.string, let ms = YAMLMap.parseDuration(text) else {
            throw error(key, n, "expected a duration such as 500ms, 30s, 5m, 1h or 14d, got '\(n.scalar?.string ?? "?")'")
        }
        return ms
    }

    static func parseDuration(_ text: String) -> Int64? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        let t = text.trimmingCharacters(in: .whitespaces)
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            let number = t.dropLast(suffix.count)
            if let v = Int64(number), v >= 0, v <= Int64.max / factor { return v * factor }
            return nil
        }
        if let v = Int64(t), v >= 0 { return v }
        return nil
    }

    mutating func stringList(_ key: String) throws(ConfigError) -> [String]? {
        guard let items = try sequence(key) else { return nil }
        var out: [String] = []
        for item in items {
            guard let s = item.scalar?.string else { throw error(key, item, "expected a list of strings") }
            out.append(s)
        }
        return out
    }

    mutating func intList(_ key: String) throws(ConfigError) -> [Int]? {
        guard let items = try sequence(key) else { return nil }
        var out: [Int] = []
        for item in items {
            guard let v = item.int else { throw error(key, item, "expected a list of integers") }
            out.append(v)
        }
        return out
    }

    /// A nested mapping, read strictly.
    mutating func map(_ key: String) throws(ConfigError) -> YAMLMap? {
        guard let n = node(key) else { return nil }
        return try YAMLMap(n, path: keyPath(key), file: file)
    }

    /// The keys of the mapping, in file order.
    var keys: [String] { mapping.compactMap { $0.key.scalar?.string } }

    /// A mapping of scalar strings (numbers and booleans are taken as written).
    mutating func stringMap(_ key: String) throws(ConfigError) -> [String: String]? {
        guard let n = node(key) else { return nil }
        guard let m = n.mapping else { throw error(key, n, "expected a mapping of names to values") }
        var out: [String: String] = [:]
        for (k, v) in m {
            guard let name = k.scalar?.string, let value = v.scalar?.string else {
                throw error(key, v, "expected scalar names and values")
            }
            out[name] = value
        }
        return out
    }

    /// Child nodes of a sequence.
    mutating func sequence(_ key: String) throws(ConfigError) -> [Node]? {
        guard let n = node(key) else { return nil }
        guard let s = n.sequence else { throw error(key, n, "expected a list") }
        return Array(s)
    }

    /// Throws for the first key that no getter asked for.
    func finish() throws(ConfigError) {
        for (k, _) in mapping {
            let name = k.scalar?.string ?? "?"
            if !read.contains(name) {
                throw ConfigError(file: file, line: k.mark?.line, key: keyPath(name), message: "unknown key")
            }
        }
    }
}
