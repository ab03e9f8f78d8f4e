import Foundation
import KafkaClient

// MARK: - JSONLReplayer

/// Produces a JSON-lines file to a topic, one record per non-empty line, keyed by a field of the record (`id` for
/// samples and labels, `version` for teachers) so related records share a partition, optionally at a fixed rate.
public struct JSONLReplayer: Sendable {
    public var path: String
    public var topic: String
    /// The JSON field whose string value becomes the message key; records without it get no key.
    public var keyField: String
    /// Records per second, or nil for as fast as the broker takes them.
    public var rate: Double?

    public init(path: String, topic: String, keyField: String = "id", rate: Double? = nil) {
        self.path = path
        self.topic = topic
        self.keyField = keyField
        self.rate = rate
    }

    /// The file's records.
    public func records() throws -> [[UInt8]] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReplayError(path: path, reason: "cannot read the file")
        }
        return data.split(separator: UInt8(ascii: "\n")).map(Array.init).filter { !$0.allSatisfy { $0 == 32 } }
    }

    /// Produces every record and waits for all acknowledgements; `progress` gets the count sent so far.
    @discardableResult
    public func replay(with producer: KafkaProducer, progress: @Sendable (Int) -> Void = { _ in }) async throws -> Int {
        let records = try records()
        let failures = Locked<[KafkaError]>([])
        let started = ContinuousClock.now
        for (i, value) in records.enumerated() {
            if let rate, rate > 0 {
                let due = started + .milliseconds(Int64(Double(i) / rate * 1000))
                if due > ContinuousClock.now { try await Task.sleep(until: due) }
            }
            let record = ProducerRecord(topic: topic, key: Self.stringField(keyField, in: value).map { Array($0.utf8) },
                                        value: value)
            while try !Self.enqueue(record, producer, failures) {
                try await Task.sleep(for: .milliseconds(2))
            }
            if i % 1000 == 999 { progress(i + 1) }
        }
        try await producer.flush(timeout: .seconds(60))
        if let error = failures.withLock({ $0.first }) { throw error }
        progress(records.count)
        return records.count
    }

    /// Queues one record; false when the local queue is full (the caller waits and retries).
    private static func enqueue(
        _ record: ProducerRecord, _ producer: KafkaProducer, _ failures: Locked<[KafkaError]>
    ) throws -> Bool {
        do {
            try producer.send(record) { result in
                if case .failure(let error) = result { failures.withLock { $0.append(error) } }
            }
            return true
        } catch {
            if error.code == .queueFull { return false }
            throw error
        }
    }

    /// The string value of a top-level field, found without parsing the whole record (good enough for keys: the
    /// daemon validates records strictly; a record whose key cannot be found is sent without one).
    static func stringField(_ name: String, in bytes: [UInt8]) -> String? {
        let needle = Array("\"\(name)\":\"".utf8)
        guard bytes.count > needle.count else { return nil }
        var i = 0
        while i + needle.count <= bytes.count {
            if bytes[i] == needle[0] && Array(bytes[i..<(i + needle.count)]) == needle {
                var j = i + needle.count
                var out: [UInt8] = []
                while j < bytes.count && bytes[j] != UInt8(ascii: "\"") && bytes[j] != UInt8(ascii: "\\") {
                    out.append(bytes[j])
                    j += 1
                }
                return j < bytes.count && bytes[j] == UInt8(ascii: "\"") ? String(decoding: out, as: UTF8.self) : nil
            }
            i += 1
        }
        return nil
    }
}

/// A replay that could not start.
public struct ReplayError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}
