import Foundation
import KafkaClient
import Logging
import Synchronization

/// Quiet logger for tests: librdkafka warnings still show.
let testLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    return logger
}()

/// A group id no other test uses.
func uniqueGroup(_ prefix: String) -> String { "\(prefix)-\(UUID().uuidString.prefix(8))" }

/// Produces `count` records with value "seq-N" (padded with spaces to `valueBytes`) and key "kN%keys", collecting
/// every delivery result. Returns the reports by sequence number; fails the test on any delivery error.
func produceSequence(
    _ producer: KafkaProducer, topic: String, count: Int, keys: Int = 97, valueBytes: Int = 0,
    during: (Int) throws -> Void = { _ in }
) async throws -> [Int: DeliveryReport] {
    let reports = Locked<[Int: DeliveryReport]>([:])
    let failures = Locked<[KafkaError]>([])
    for seq in 0..<count {
        var value = Array("seq-\(seq)".utf8)
        if value.count < valueBytes { value += repeatElement(UInt8(ascii: " "), count: valueBytes - value.count) }
        let record = ProducerRecord(topic: topic, key: "k\(seq % keys)", value: value)
        while !enqueue(producer, record, seq: seq, reports: reports, failures: failures) {
            try await Task.sleep(for: .milliseconds(5))
        }
        try during(seq)
    }
    try await producer.flush(timeout: .seconds(120))
    let errors = failures.withLock { $0 }
    if let first = errors.first { throw first }
    return reports.withLock { $0 }
}

/// Enqueues one record; false when the local queue is full.
private func enqueue(
    _ producer: KafkaProducer, _ record: ProducerRecord, seq: Int, reports: Locked<[Int: DeliveryReport]>,
    failures: Locked<[KafkaError]>
) -> Bool {
    do {
        try producer.send(record) { result in
            switch result {
            case .success(let report): reports.withLock { $0[seq] = report }
            case .failure(let error): failures.withLock { $0.append(error) }
            }
        }
        return true
    } catch {
        if error.code == .queueFull { return false }
        failures.withLock { $0.append(error) }
        return true
    }
}

/// The sequence number in a "seq-N" value.
/// What the producer was told for each sequence number, per partition, in offset order.
func deliveredByPartition(_ reports: [Int: DeliveryReport]) -> [Int32: [(offset: Int64, seq: Int)]] {
    var out: [Int32: [(offset: Int64, seq: Int)]] = [:]
    for (seq, report) in reports { out[report.partition, default: []].append((report.offset, seq)) }
    for p in out.keys { out[p]!.sort { $0.offset < $1.offset } }
    return out
}

func sequenceNumber(_ message: KafkaMessage) -> Int {
    Int(String(decoding: message.value, as: UTF8.self).dropFirst(4).prefix { $0 != " " })!
}

/// Polls until `done` says so or `deadline` passes.
func pollUntil(
    _ consumer: KafkaConsumer, deadline: Duration = .seconds(60),
    handle: (ConsumerEvent) throws -> Void, done: () -> Bool
) async throws {
    let clock = ContinuousClock()
    let end = clock.now + deadline
    while !done() && clock.now < end {
        let batch = try await consumer.poll(maxMessages: 2048, timeout: .milliseconds(200))
        for event in batch.events { try handle(event) }
    }
}

/// Finds the built `distilld` executable next to the test bundle.
func distilldExecutable() -> URL? {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("distilld")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return nil
}

/// The package root (for streams/topics.yaml).
let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Runs a command to completion with optional stdin, returning (status, stdout, stderr).
@discardableResult
func runProcess(_ path: String, _ args: [String], stdin: String? = nil, timeout: TimeInterval = 60) throws
    -> (status: Int32, out: String, err: String)
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = args
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = Pipe()
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    // Read before waiting, so a full pipe cannot deadlock the child.
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    let start = Date()
    while process.isRunning && Date().timeIntervalSince(start) < timeout { usleep(10_000) }
    if process.isRunning { process.terminate() }
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// Finds a program on PATH.
func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// A value behind a lock, shareable with escaping closures (a local `Mutex` cannot be captured).
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
