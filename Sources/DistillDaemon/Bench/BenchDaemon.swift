import Dispatch
import Foundation
import Logging
import ServiceLifecycle

// MARK: - BenchDaemon

/// The daemon a pipeline phase measures: `DistillService` inside the benchmark's process, or `distilld run` as a child
/// process (the default of the command line), whose RSS is then the daemon's own: the feeder, the baselines and the
/// synthetic stream's pools stay out of it.
protocol BenchDaemon: Sendable {
    /// Starts it; `assigned` is called (once or more) when it is assigned its input partitions.
    func start(assigned: @escaping @Sendable () -> Void) throws
    /// Why it stopped on its own, if it did.
    var failure: (any Error)? { get }
    /// Its RSS now, MB.
    var rssMegabytes: Double? { get }
    /// Its peak RSS since `start`, MB.
    var peakRSSMegabytes: Double? { get }
    /// Starts measuring the peak RSS of a phase; false where that is not possible.
    func startPhasePeak() -> Bool
    /// Its peak RSS since `startPhasePeak()`, MB.
    var phasePeakRSSMegabytes: Double? { get }
    /// Stops it gracefully (final checkpoint included) and returns its sample counters: `ingested`, `late`,
    /// `duplicate`, `dead letters` (the probes' included).
    func stop() async throws -> [String: Int]
}

/// `DistillService` in a `ServiceGroup` of this process.
final class InProcessDaemon: BenchDaemon, @unchecked Sendable {
    // `@unchecked Sendable`: `group` and `task` are set once in `start` and read in `stop`, both called by the phase
    // in order from one task; `error` is behind a mutex.
    private let config: DistillConfig
    private let logger: Logger
    private let metrics = DistillMetrics()
    private var group: ServiceGroup?
    private var task: Task<Void, Never>?
    private let error = Locked<String?>(nil)

    init(config: DistillConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    func start(assigned: @escaping @Sendable () -> Void) throws {
        BenchMemory.resetPeak()
        let hooks = DistillServiceHooks(instance: "bench", onAssigned: { _ in assigned() })
        let service = DistillService(config: config, logger: logger, hooks: hooks, metrics: metrics)
        let group = ServiceGroup(configuration: .init(services: [service], logger: logger))
        let error = self.error
        self.group = group
        task = Task {
            do { try await group.run() } catch let e { error.withLock { $0 = $0 ?? "\(e)" } }
        }
    }

    var failure: (any Error)? { error.withLock { $0 }.map { BenchError.incomplete("the pipeline stopped: \($0)") } }
    var rssMegabytes: Double? { Context.rssMegabytes }
    var peakRSSMegabytes: Double? { BenchMemory.peakBytes.map { Double($0) / 1e6 } }
    /// Resetting this process's `VmHWM` would lose the peak of the whole run.
    func startPhasePeak() -> Bool { false }
    var phasePeakRSSMegabytes: Double? { nil }

    func stop() async throws -> [String: Int] {
        await group?.triggerGracefulShutdown()
        await task?.value
        if let failure { throw failure }
        let text = metrics.render()
        func samples(_ outcome: String) -> Int {
            PipelinePhase.counter(text, "distilld_samples_total{outcome=\"\(outcome)\"}")
        }
        return ["ingested": samples("ingested"), "late": samples("late"), "duplicate": samples("duplicate"),
                "dead letters": samples("dead_letter")]
    }
}

/// `distilld run --config <file>` as a child process, logging JSON to a file the benchmark reads: the assignment, and
/// at the end the counters of the "distilld stopped" line. Its RSS is sampled from `/proc/<pid>/status` every 20 ms.
final class ChildDaemon: BenchDaemon, @unchecked Sendable {
    // `@unchecked Sendable`: `process` and `watcher` are set once in `start`; the sampled figures are behind a mutex.
    private let executable: String
    /// Runs it on a CPU of its own when set.
    private let affinity: BenchAffinity?
    private let configPath: String
    private let logPath: String
    private var process: Process?
    private var watcher: Thread?
    private struct Sampled: Sendable {
        var peak = 0
        var current = 0
        /// Peak since `startPhasePeak()`: `VmHWM` after it was reset, or the largest `VmRSS` sampled.
        var phasePeak: Int?
        var assigned = false
        var logOffset: UInt64 = 0
        var pending = ""
        var stopped: [String: String]?
        var stopWatching = false
    }
    private let sampled = Locked(Sampled())

    /// Writes `yaml` next to the log in `directory`.
    init(executable: String, yaml: String, directory: String, name: String, affinity: BenchAffinity? = nil) throws {
        self.executable = executable
        self.affinity = affinity
        configPath = (directory as NSString).appendingPathComponent("\(name).yaml")
        logPath = (directory as NSString).appendingPathComponent("\(name).log")
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    func start(assigned: @escaping @Sendable () -> Void) throws {
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let process = Process()
        let arguments = ["run", "--config", configPath, "--log-format", "json", "--log-level", "info"]
        // taskset sets the CPU and execs the daemon: the pid stays the daemon's (RSS, signals).
        let (command, commandArguments) = affinity?.pipelineCommand(executable, arguments) ?? (executable, arguments)
        process.executableURL = URL(fileURLWithPath: command)
        process.arguments = commandArguments
        process.standardOutput = log
        process.standardError = log
        do {
            try process.run()
        } catch {
            throw BenchError.incomplete("cannot start `\(executable) run`: \(error)")
        }
        self.process = process
        let pid = process.processIdentifier
        let sampled = self.sampled
        let logPath = self.logPath
        let thread = Thread {
            while !sampled.withLock({ $0.stopWatching }) {
                let rss = BenchMemory.resident(of: pid)
                let lines = Self.newLines(logPath, sampled)
                var announce = false
                sampled.withLock { s in
                    if let rss {
                        s.current = rss.current
                        s.peak = max(s.peak, rss.peak)
                        if let phase = s.phasePeak { s.phasePeak = max(phase, rss.peak) }
                    }
                    for line in lines {
                        switch line["message"] {
                        case "partitions assigned"?:
                            if !s.assigned { announce = true }
                            s.assigned = true
                        case "distilld stopped"?:
                            s.stopped = line
                        default:
                            break
                        }
                    }
                }
                if announce { assigned() }
                usleep(20_000)
            }
        }
        thread.name = "bench-daemon-watch"
        watcher = thread
        thread.start()
    }

    /// Complete JSON log lines written since the last call.
    private static func newLines(_ path: String, _ sampled: Locked<Sampled>) -> [[String: String]] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        let offset = sampled.withLock { $0.logOffset }
        guard (try? handle.seek(toOffset: offset)) != nil, let data = try? handle.readToEnd(), !data.isEmpty else {
            return []
        }
        return sampled.withLock { s in
            s.logOffset = offset + UInt64(data.count)
            var text = s.pending + String(decoding: data, as: UTF8.self)
            var lines: [[String: String]] = []
            while let newline = text.firstIndex(of: "\n") {
                let line = text[..<newline]
                // Every value of a JSON log line is a string (`JSONLogHandler`).
                if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String] {
                    lines.append(object)
                }
                text = String(text[text.index(after: newline)...])
            }
            s.pending = text
            return lines
        }
    }

    var failure: (any Error)? {
        guard let process, !process.isRunning else { return nil }
        return BenchError.incomplete("`distilld run` exited with status \(process.terminationStatus) before the "
                                     + "benchmark stopped it; its log: \(logPath)")
    }

    var rssMegabytes: Double? {
        let mb = sampled.withLock { Double($0.current) / 1e6 }
        return mb > 0 ? mb : nil
    }

    var peakRSSMegabytes: Double? {
        let mb = sampled.withLock { Double($0.peak) / 1e6 }
        return mb > 0 ? mb : nil
    }

    /// Resets the child's `VmHWM` to its current RSS (`echo 5 > /proc/<pid>/clear_refs`); the sampler keeps the
    /// whole run's peak apart.
    func startPhasePeak() -> Bool {
        guard let process, process.isRunning,
              let handle = FileHandle(forWritingAtPath: "/proc/\(process.processIdentifier)/clear_refs") else { return false }
        defer { try? handle.close() }
        do {
            try handle.write(contentsOf: Data("5".utf8))
        } catch {
            return false
        }
        let current = BenchMemory.resident(of: process.processIdentifier)?.peak ?? 0
        sampled.withLock { $0.phasePeak = current }
        return true
    }

    var phasePeakRSSMegabytes: Double? {
        sampled.withLock { $0.phasePeak }.map { Double($0) / 1e6 }
    }

    func stop() async throws -> [String: Int] {
        guard let process else { return [:] }
        if let failure { throw failure }
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(120)
        while process.isRunning && ContinuousClock.now < deadline { await pauseIgnoringCancellation(.milliseconds(20)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            throw BenchError.incomplete("`distilld run` did not stop within 120 s of SIGTERM; its log: \(logPath)")
        }
        // The watcher reads the log's last lines, then stops.
        try? await Task.sleep(for: .milliseconds(60))
        let lines = Self.newLines(logPath, sampled)
        let stopped = sampled.withLock { s -> [String: String]? in
            s.stopWatching = true
            return lines.last { $0["message"] == "distilld stopped" } ?? s.stopped
        }
        guard process.terminationStatus == 0, let stopped, stopped["samples_ingested"].flatMap({ Int($0) }) != nil
        else {
            throw BenchError.incomplete("`distilld run` exited with status \(process.terminationStatus) without its "
                                        + "final counters; its log: \(logPath)")
        }
        let names = ["ingested": "samples_ingested", "late": "late_samples", "duplicate": "duplicate_samples",
                     "dead letters": "dead_letters"]
        return names.compactMapValues { stopped[$0].flatMap { Int($0) } }
    }
}
