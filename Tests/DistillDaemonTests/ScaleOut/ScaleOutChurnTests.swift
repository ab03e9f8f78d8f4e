import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Testing

/// A `distilld run` process of a scale-out group, logging JSON to a file of its own.
final class ScaleOutProcess {
    let name: String
    let process = Process()
    let log: URL
    /// When the test killed it (its ownership ends there at the latest).
    var killedAt: Date?

    init(name: String, binary: URL, config: String, dir: URL) throws {
        self.name = name
        log = dir.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.executableURL = binary
        process.arguments = ["run", "--config", config, "--log-format", "json", "--log-level", "info"]
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    /// The JSON log lines so far.
    func lines() -> [[String: Any]] {
        guard let data = FileManager.default.contents(atPath: log.path) else { return [] }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// True when its last merge-lease event is "taken".
    var isMerging: Bool {
        let lease = lines().compactMap { $0["message"] as? String }.filter { $0.hasPrefix("merge lease") }
        return lease.last?.hasPrefix("merge lease taken") == true
    }

    /// SIGKILL, then waits for the exit, at most 10 s. (`Process.waitUntilExit` never returned once for a child that
    /// had crashed into the Swift backtracer: it stayed a zombie the run loop never heard of.)
    func killNine() {
        kill(process.processIdentifier, SIGKILL)
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && !isZombie && Date() < deadline { usleep(20_000) }
        killedAt = Date()
    }

    /// True once the process has exited but has not been reaped.
    var isZombie: Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    /// SIGTERM, then up to `within` for a clean exit; past that it is killed and the result is false.
    func terminate(within: Duration = .seconds(30)) async -> Bool {
        process.terminate()
        let deadline = ContinuousClock.now + within
        while process.isRunning && ContinuousClock.now < deadline { await pauseIgnoringCancellation(.milliseconds(50)) }
        guard !process.isRunning else {
            print("\(name) still running \(within) after SIGTERM: killed")
            killNine()
            return false
        }
        if process.terminationStatus != 0 || process.terminationReason != .exit {
            print("\(name) ended with \(process.terminationReason == .exit ? "status" : "signal") "
                  + "\(process.terminationStatus)")
        }
        return process.terminationStatus == 0 && process.terminationReason == .exit
    }
}

/// Instances join and leave, and the merger is killed, while the stream flows.
extension HeavyKafkaTests {
    @Suite("Scale-out churn", .serialized)
    struct ScaleOutChurnTests {
        /// One instance's ownership of one partition: from its assignment log line to the last sample it processed.
        struct Ownership {
            var instance: String
            var partition: Int32
            var from: Double
            var to: Double
        }

        static func milliseconds(_ line: [String: Any]) -> Double? {
            guard let ts = line["ts"] as? String,
                  let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(ts) else { return nil }
            return date.timeIntervalSince1970 * 1000
        }

        /// Ownership intervals from an instance's log: assigned → last processed (revoked, stopped, or killed).
        static func ownerships(_ p: ScaleOutProcess) -> [Ownership] {
            var open: [Int32: Double] = [:]
            var out: [Ownership] = []
            func last(_ text: Any?) -> [Int32: Double] {
                var m: [Int32: Double] = [:]
                for pair in ((text as? String) ?? "").split(separator: ",") {
                    let kv = pair.split(separator: "=")
                    if kv.count == 2, let k = Int32(kv[0]), let v = Double(kv[1]) { m[k] = v }
                }
                return m
            }
            func close(_ partitions: [Int32], _ processed: [Int32: Double], fallback: Double?) {
                for q in partitions {
                    guard let from = open.removeValue(forKey: q) else { continue }
                    out.append(Ownership(instance: p.name, partition: q, from: from,
                                         to: processed[q] ?? fallback ?? from))
                }
            }
            for line in p.lines() {
                guard let message = line["message"] as? String, let ts = milliseconds(line) else { continue }
                let samples = ((line["samples"] as? String) ?? "").split(separator: ",").compactMap { Int32($0) }
                switch message {
                case "partitions assigned": for q in samples { open[q] = ts }
                case "partitions revoked": close(samples, last(line["last_processed"]), fallback: nil)
                case "input stopped": close(Array(open.keys), last(line["last_processed"]), fallback: nil)
                default: break
                }
            }
            // Killed: whatever it owned ends at the kill at the latest.
            close(Array(open.keys), [:], fallback: p.killedAt.map { $0.timeIntervalSince1970 * 1000 })
            return out
        }

        /// A directory for the processes' config and logs, and the scale-out config for `broker` written into it.
        static func processConfig(_ broker: EmbeddedBroker, name: String) throws -> (dir: URL, path: String, yaml: String) {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distilld-\(name)-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let yaml = HeavyKafkaTests.ScaleOutTests.yaml(broker, group: "\(name)-\(UUID().uuidString.prefix(8))")
            let path = dir.appendingPathComponent("distilld.yaml").path
            try Data(yaml.utf8).write(to: URL(fileURLWithPath: path))
            return (dir, path, yaml)
        }

        @Test("1, 2 and 3 `distilld run` processes on 8 partitions: the same alert ids and window figures as one single-instance engine; every process stops cleanly",
              arguments: [1, 2, 3])
        func equivalence(instances: Int) async throws {
            let binary = try #require(distilldBinary(), "build the distilld executable first (`swift build`)")
            let (broker, _, expectedIDs, expectedFigures) = try await HeavyKafkaTests.ScaleOutTests.scenario()
            let (dir, configPath, _) = try Self.processConfig(broker, name: "equivalence")
            let running = try (0..<instances).map {
                try ScaleOutProcess(name: "i\($0)", binary: binary, config: configPath, dir: dir)
            }
            try await HeavyKafkaTests.ScaleOutTests.awaitWindows(broker, expected: expectedFigures, within: .seconds(120))
            try await Task.sleep(for: .seconds(1))
            var clean = 0
            for p in running where await p.terminate() { clean += 1 }

            let outcome = try await HeavyKafkaTests.ScaleOutTests.outcome(
                broker, expectedIDs: expectedIDs, expectedFigures: expectedFigures)
            let owners = Set(running.flatMap(Self.ownerships).map(\.instance)).count
            print("figure: processes=\(instances) owning=\(owners) clean=\(clean)/\(instances) "
                  + "expected=\(expectedIDs.count) \(outcome.summary)")
            #expect(clean == instances, "every instance exits 0 on SIGTERM")
            #expect(owners == instances, "every instance owned partitions")
            outcome.expectMatchesReference(expectedIDs: expectedIDs)
            if clean == instances && outcome.figuresMatch {
                try? FileManager.default.removeItem(at: dir)
            } else {
                print("instance logs kept in \(dir.path)")
            }
        }

        @Test("Instances join and leave 10 times and the merging instance is kill -9ed: no partition owned by two live instances at once, alerts lost 0 and duplicated 0, window figures equal the single-instance engine's")
        func churn() async throws {
            let binary = try #require(distilldBinary(), "build the distilld executable first (`swift build`)")
            let partitions = HeavyKafkaTests.ScaleOutTests.partitions
            let broker = try DaemonEndToEndTests.brokerWithTopics(samplePartitions: partitions)
            let (dir, configPath, yaml) = try Self.processConfig(broker, name: "churn")
            let records = RotationScenario().records()
            let (expectedIDs, expectedFigures) = try HeavyKafkaTests.ScaleOutTests.reference(records, yaml: yaml)

            let producer = try KafkaProducer(properties: broker.clientProperties, logger: DaemonEndToEndTests.quiet)
            var fed = 0
            func feed(to n: Int) async throws {
                while fed < min(n, records.count) {
                    try producer.send(ProducerRecord(topic: "samples", partition: Int32(fed % partitions),
                                                     value: records[fed])) { _ in }
                    fed += 1
                }
                try await producer.flush(timeout: .seconds(30))
            }
            var all: [ScaleOutProcess] = []
            var alive: [ScaleOutProcess] = []
            func join() throws {
                let p = try ScaleOutProcess(name: "i\(all.count)", binary: binary, config: configPath, dir: dir)
                all.append(p)
                alive.append(p)
            }
            // 10 joins and leaves (never fewer than one instance), and one kill -9 of whoever merges.
            let actions = ["join", "join", "leave", "join", "kill-merger", "join", "leave", "join", "leave", "join",
                           "leave"]
            try join()
            var joins = 0, leaves = 0, killedMerger = false, unclean: [String] = []
            let chunk = records.count / (actions.count + 1)
            for (round, action) in actions.enumerated() {
                try await feed(to: (round + 1) * chunk)
                try await Task.sleep(for: .seconds(3))
                switch action {
                case "join":
                    try join()
                    joins += 1
                case "leave":
                    let p = alive.removeFirst()
                    let clean = await p.terminate()
                    #expect(clean, "\(p.name) stops cleanly within 30 s")
                    if !clean { unclean.append(p.name) }
                    leaves += 1
                default:
                    // The merger may still be taking over after an earlier change: wait for one.
                    let deadline = ContinuousClock.now + .seconds(30)
                    while !alive.contains(where: { $0.isMerging }) && ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(200))
                    }
                    let current = alive.first { $0.isMerging }
                    let merger = try #require(current, "an instance merges")
                    merger.killNine()
                    alive.removeAll { $0 === merger }
                    killedMerger = true
                }
            }
            try await feed(to: records.count)
            await producer.close()
            try await HeavyKafkaTests.ScaleOutTests.awaitWindows(broker, expected: expectedFigures, within: .seconds(120))
            try await Task.sleep(for: .seconds(1))
            for p in alive {
                let clean = await p.terminate()
                #expect(clean, "\(p.name) stops cleanly within 30 s")
                if !clean { unclean.append(p.name) }
            }

            let outcome = try await HeavyKafkaTests.ScaleOutTests.outcome(
                broker, expectedIDs: expectedIDs, expectedFigures: expectedFigures)

            // Ownership: per partition, each owner's span ends before the next owner's begins.
            var overlaps = 0, handovers = 0
            let spans = all.flatMap(Self.ownerships)
            for q in 0..<Int32(partitions) {
                let ordered = spans.filter { $0.partition == q }.sorted { $0.from < $1.from }
                for (a, b) in zip(ordered, ordered.dropFirst()) where a.instance != b.instance {
                    handovers += 1
                    if b.from < a.to { overlaps += 1 }
                }
            }
            let restored = all.reduce(0) { n, p in
                n + p.lines().filter { ($0["message"] as? String) == "partition restored from the changelog" }.count
            }
            let mergers = all.reduce(0) { n, p in
                n + p.lines().filter { ($0["message"] as? String)?.hasPrefix("merge lease taken") == true }.count
            }
            print("figure: joins=\(joins) leaves=\(leaves) kill9=1 merger-killed=\(killedMerger) handovers=\(handovers) "
                  + "overlapping=\(overlaps) restored-from-changelog=\(restored) merge-takeovers=\(mergers) "
                  + "expected=\(expectedIDs.count) \(outcome.summary)")
            #expect(joins + leaves == 10)
            #expect(killedMerger)
            #expect(handovers >= 10, "partitions changed hands")
            #expect(overlaps == 0, "no partition processed by two live instances at once")
            #expect(mergers >= 2, "another instance took over merging")
            outcome.expectMatchesReference(expectedIDs: expectedIDs)
            let snapshots = outcome.snapshots
            if outcome.figuresMatch && unclean.isEmpty {
                try? FileManager.default.removeItem(at: dir)
            } else {
                if !unclean.isEmpty { print("not stopped cleanly: \(unclean)") }
                // What differs, and the instances' logs, for the failure report.
                for m in snapshots {
                    guard let (id, got) = CrashRecoveryTests.figures(m.value), let want = expectedFigures[id] else { continue }
                    let differing = want.keys.sorted().filter { abs(want[$0]! - (got[$0] ?? .nan)) > 1e-9 * max(1, abs(want[$0]!)) }
                    guard !differing.isEmpty else { continue }
                    let copies = snapshots.filter { CrashRecoveryTests.figures($0.value)?.0 == id }.map {
                        "\($0.offset)@\($0.timestamp ?? 0):\(CrashRecoveryTests.figures($0.value)?.1["window.samples"] ?? -1)"
                    }
                    print("mismatch: \(id.prefix(12)) at \(m.topicPartition)@\(m.offset) ts \(m.timestamp ?? 0): samples "
                          + "\(got["window.samples"] ?? -1) (expected \(want["window.samples"] ?? -1)); published "
                          + "\(copies.joined(separator: " ")); differing \(differing.prefix(2))")
                }
                print("instance logs kept in \(dir.path)")
            }
        }
    }
}
