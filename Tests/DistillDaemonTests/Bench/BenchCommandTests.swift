import DistillCore
import DistillWire
import Dispatch
import Foundation
import Logging
import Synchronization
import Testing

@testable import DistillDaemon

/// `distilld bench` end to end at a tiny scale: every sample produced is processed, and the report has every field.
/// No timing is asserted: rates and latencies depend on the machine.
@Suite("distilld bench", .serialized, .hangGuard())
struct BenchCommandTests {
    static func options(_ modes: [BenchOptions.Mode], students: [BenchOptions.Student] = [.softmax]) -> BenchOptions {
        var o = BenchOptions()
        o.modes = modes
        o.students = students
        o.samples = 1_500
        o.features = 8
        o.classes = 4
        o.partitions = 4
        o.eventRate = 1  // 1,500 samples span 25 minutes of event time, so `fast` windows close
        o.latencySeconds = 0.5
        o.latencyRate = 2_000
        o.probesPerSecond = 200
        o.rssEvery = 500
        o.jsonDecoderSamples = 50
        o.broker = .inProcess
        return o
    }

    @Test("every mode processes exactly what was produced, and the report is complete")
    func smoke() async throws {
        var logger = Logger(label: "bench-test")
        logger.logLevel = .error
        // A compressed feed: every consumer, the pipeline's too, decompresses it.
        var options = Self.options([.decode, .monitor, .full])
        options.compression = "lz4"
        let report = try await BenchRunner(options: options, logger: logger).run()
        #expect(report.setup.compression == "lz4")

        #expect(report.jsonDecoder.samples == 50)
        #expect(report.jsonDecoder.samplesPerSecond > 0)
        let raw = try #require(report.rawConsume)
        #expect(raw.samples == 1_500)
        #expect(raw.samplesPerSecond > 0)
        #expect(report.runs.map(\.name) == ["decode", "monitor", "full/softmax"])
        for run in report.runs {
            #expect(run.produced > 1_500, "\(run.name): the latency phase adds samples")
            #expect(run.processed == run.produced, "\(run.name): processed \(run.processed) of \(run.produced)")
            #expect(run.samplesPerSecond > 0)
            #expect(run.vsRawConsume != nil && run.vsJSONDecoder != nil)
            #expect(run.preloaded)
            #expect(run.unexpectedDeadLetters == 0)
            let latency = try #require(run.latency, "\(run.name) has a latency phase")
            #expect(latency.probes > 0)
            #expect(latency.p50Milliseconds <= latency.p99Milliseconds)
            #expect(latency.p99Milliseconds <= latency.maxMilliseconds)
            #expect(run.peakRSSMegabytes != nil)
            #expect(!run.rss.isEmpty)
        }
        let monitor = try #require(report.runs.first { $0.name == "monitor" })
        #expect((monitor.outputs["windows"] ?? 0) > 0, "window snapshots were published")
        #expect(report.targets.contains { $0.name == "monitor vs raw consume" })
        // Every CPU's busy share during the latency phase, each a percentage.
        let busy = try #require(monitor.latency?.cpuBusyPercent)
        #expect(!busy.isEmpty && busy.values.allSatisfy { (0...100).contains($0) })

        // Both renderings carry every configuration.
        let table = report.table
        for name in ["JSONDecoder", "raw consume", "decode", "monitor", "full/softmax", "issue 6 targets"] {
            #expect(table.contains(name), "table lacks \(name)")
        }
        let json = try JSONSerialization.jsonObject(with: Data(try report.json().utf8)) as? [String: Any]
        let object = try #require(json)
        for key in ["setup", "jsonDecoder", "rawConsume", "runs", "targets"] {
            #expect(object[key] != nil, "json lacks \(key)")
        }
        let runs = try #require(object["runs"] as? [[String: Any]])
        for key in ["name", "produced", "processed", "samplesPerSecond", "latency", "peakRSSMegabytes", "rss",
                    "vsRawConsume", "vsJSONDecoder"] {
            #expect(runs.allSatisfy { $0[key] != nil }, "a run lacks \(key)")
        }
    }

    @Test("--format json,protobuf: each mode runs on both formats, every sample processed, ratios to JSON reported")
    func protobufFormat() async throws {
        var logger = Logger(label: "bench-test")
        logger.logLevel = .error
        var options = Self.options([.decode, .monitor])
        options.formats = [.json, .protobuf]
        let report = try await BenchRunner(options: options, logger: logger).run()
        #expect(report.runs.map(\.name) == ["decode", "decode (protobuf)", "monitor", "monitor (protobuf)"])
        let raw = try #require(report.protobufRawConsume)
        #expect(raw.samples == 1_500 && report.rawConsume != nil)
        for run in report.runs {
            #expect(run.processed == run.produced, "\(run.name): processed \(run.processed) of \(run.produced)")
            #expect(run.unexpectedDeadLetters == 0, "\(run.name): probes are the only dead letters")
            #expect((run.vsJSONFormat != nil) == run.name.hasSuffix("(protobuf)"))
        }
        let monitor = try #require(report.runs.first { $0.name == "monitor (protobuf)" })
        #expect((monitor.outputs["windows"] ?? 0) > 0, "window snapshots were published")
        #expect(report.table.contains("raw consume (protobuf)") && report.table.contains("on JSON records"))
        #expect(try #require(report.setup.meanProtobufRecordBytes) < report.setup.meanRecordBytes)
    }

    @Test("--engine-only: the engine alone ingests every sample of the same stream, beside the run over the broker")
    func engineOnly() async throws {
        var logger = Logger(label: "bench-test")
        logger.logLevel = .error
        var options = Self.options([.monitor, .full])
        options.engineOnly = true
        options.latencySeconds = 0
        let report = try await BenchRunner(options: options, logger: logger).run()
        #expect(report.runs.map(\.name)
                    == ["monitor engine-only", "monitor", "full/softmax engine-only", "full/softmax"])
        for run in report.runs where run.name.hasSuffix("engine-only") {
            #expect(run.processed == 1_500 && run.produced == 1_500, "\(run.name): \(run.processed) of 1,500")
            #expect(run.samplesPerSecond > 0 && run.vsJSONDecoder != nil && run.latency == nil)
            #expect((run.outputs["engine outputs"] ?? 0) > 0, "\(run.name): windows closed")
        }
        #expect(!report.targets.contains { $0.name.contains("engine-only") }, "targets judge the runs over Kafka")
        #expect(report.table.contains("monitor engine-only"))
    }

    @Test("--engine-alone: only the engines run, with no broker, no baseline over Kafka and no targets judged")
    func engineAlone() async throws {
        var logger = Logger(label: "bench-test")
        logger.logLevel = .error
        var options = Self.options([.monitor, .full])
        options.engineOnly = true
        options.engineAlone = true
        let report = try await BenchRunner(options: options, logger: logger).run()
        #expect(report.runs.map(\.name) == ["monitor engine-only", "full/softmax engine-only"])
        #expect(report.rawConsume == nil && report.setup.broker == "none (--engine-alone)")
        for run in report.runs {
            #expect(run.processed == 1_500 && (run.outputs["engine outputs"] ?? 0) > 0, "\(run.name)")
        }
        #expect(report.targets.isEmpty, "nothing over Kafka ran, so no target is judged")
        options.modes = [.decode, .monitor]
        #expect(throws: BenchError.self, "decode is measured over the broker") { try options.validate() }
    }

    @Test("pinning: the daemon's command starts it on the pipeline CPU, and a running process is moved to the others")
    func pinning() throws {
        let cpus = BenchAffinity.usableCPUs()
        #expect(!cpus.isEmpty && cpus == cpus.sorted())
        #expect(BenchAffinity.parseCPUList("0-3,6") == [0, 1, 2, 3, 6])
        #expect(BenchAffinity.parseCPUList(" 5 ,1-2") == [1, 2, 5])
        let (plan, why) = BenchAffinity.plan()
        guard let affinity = plan else {
            // One CPU (or no taskset): nothing to pin, and the report says why.
            #expect(cpus.count < 2 || why != nil)
            return
        }
        #expect(affinity.pipelineCPU == cpus.last && affinity.otherCPUs == Array(cpus.dropLast()))
        func allowed(_ pid: Int32) -> [Int] { BenchAffinity.allowedCPUs(status: "/proc/\(pid)/status") }
        // `sleep` stands in for `distilld run`: taskset execs it on the pipeline's CPU, under the same pid.
        let (command, arguments) = affinity.pipelineCommand("/bin/sleep", ["20"])
        let pinned = Process()
        pinned.executableURL = URL(fileURLWithPath: command)
        pinned.arguments = arguments
        try pinned.run()
        defer { kill(pinned.processIdentifier, SIGKILL); pinned.waitUntilExit() }
        let other = Process()
        other.executableURL = URL(fileURLWithPath: "/bin/sleep")
        other.arguments = ["20"]
        try other.run()
        defer { kill(other.processIdentifier, SIGKILL); other.waitUntilExit() }
        try affinity.pinElsewhere(pid: other.processIdentifier)
        // taskset execs: wait until the pid shows sleep rather than taskset itself.
        let deadline = Date().addingTimeInterval(10)
        while (try? String(contentsOfFile: "/proc/\(pinned.processIdentifier)/comm", encoding: .utf8))?
            .hasPrefix("sleep") != true && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(allowed(pinned.processIdentifier) == [affinity.pipelineCPU])
        let others = allowed(other.processIdentifier)
        #expect(others == affinity.otherCPUs, "moved to \(others)")

        // A consume loop's thread: pinned alone (this test's other threads keep their CPUs), and a thread it starts
        // afterwards, as librdkafka's are, inherits the CPU.
        let before = BenchAffinity.currentThreadCPUs()
        let seen = Mutex<(pinned: [Int], child: [Int], error: String?)>(([], [], nil))
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            do {
                try affinity.pinCurrentThread()
                let pinnedCPUs = BenchAffinity.currentThreadCPUs()
                let childDone = DispatchSemaphore(value: 0)
                let child = Thread {
                    let cpus = BenchAffinity.currentThreadCPUs()
                    seen.withLock { $0.child = cpus }
                    childDone.signal()
                }
                child.start()
                childDone.wait()
                seen.withLock { $0.pinned = pinnedCPUs }
            } catch {
                seen.withLock { $0.error = "\(error)" }
            }
            done.signal()
        }
        thread.start()
        done.wait()
        let result = seen.withLock { $0 }
        #expect(result.error == nil)
        #expect(result.pinned == [affinity.pipelineCPU])
        #expect(result.child == [affinity.pipelineCPU])
        #expect(BenchAffinity.currentThreadCPUs() == before, "only the consume thread moved")
    }

    @Test("flow control follows the partition that lags most, even where a consume loop counts exactly")
    func flowControlFollowsTheSlowestPartition() {
        let tracker = ProbeTracker(partitions: 2, rssEvery: 1_000_000, rss: { nil })
        func probe(_ before: Int, _ partition: Int32) -> BenchProbe {
            BenchProbe(producedBefore: before, partition: partition, sentNanos: 0, isEnd: false, timed: false)
        }
        tracker.counted(1_000)
        // Until every partition has shown a probe, only the exact count is known.
        #expect(tracker.processedEverywhere == 1_000)
        tracker.saw(probe(900, 0), at: 1)
        #expect(tracker.processedEverywhere == 1_000)
        // Partition 1 is far behind: the feeder must wait for it, whatever the total says.
        tracker.saw(probe(300, 1), at: 2)
        #expect(tracker.processedEverywhere == 300)
        tracker.saw(probe(990, 1), at: 3)
        #expect(tracker.processedEverywhere == 900)
        // A pipeline run has no exact count: the probes alone.
        let pipeline = ProbeTracker(partitions: 2, rssEvery: 1_000_000, rss: { nil })
        #expect(pipeline.processedEverywhere == 0)
        pipeline.saw(probe(500, 0), at: 1)
        pipeline.saw(probe(700, 1), at: 2)
        #expect(pipeline.processedEverywhere == 500)
    }

    @Test("the daemon as a `distilld run` child: every sample ingested, RSS read from the child's /proc entry")
    func childDaemon() async throws {
        let binary = try #require(distilldBinary(), "build the distilld executable first (`swift build`)")
        var logger = Logger(label: "bench-test")
        logger.logLevel = .error
        var options = Self.options([.monitor])
        options.pipeline = .childProcess(executable: binary.path)
        let report = try await BenchRunner(options: options, logger: logger).run()
        let monitor = try #require(report.runs.first)
        #expect(monitor.name == "monitor")
        // The child's own counter, from its "distilld stopped" log line, includes the latency phase's samples.
        #expect(monitor.processed == monitor.produced && monitor.produced > 1_500)
        #expect(monitor.unexpectedDeadLetters == 0 && (monitor.outputs["windows"] ?? 0) > 0)
        let peak = try #require(monitor.peakRSSMegabytes)
        let last = try #require(monitor.rss.last?.megabytes)
        // The child's figures, not this process's: a daemon is at least a few MB, and never above its own peak.
        #expect(peak > 5 && last > 5 && last <= peak)
        let latency = try #require(monitor.latency)
        #expect(latency.probes > 0)
        // The latency phase's own peak: the child's VmHWM reset at its start, so within the run's peak and at least
        // the RSS it started from (less a sampling interval's worth of freed memory).
        let phasePeak = try #require(latency.peakRSSMegabytes, "the child's peak is reset for the latency phase")
        let phaseStart = try #require(latency.startRSSMegabytes)
        #expect(phasePeak > 5 && phasePeak <= peak && phasePeak >= phaseStart * 0.9)
    }

    @Test("options out of range are refused with the option's name")
    func validation() {
        var o = Self.options([.monitor])
        o.labelRate = 1.5
        #expect(throws: BenchError.self) { try o.validate() }
        o = Self.options([.full], students: [])
        #expect(throws: BenchError.self) { try o.validate() }
        #expect((try? Self.options([.decode]).validate()) != nil)
        o = Self.options([.decode])
        o.compression = "brotli"
        let refused = #expect(throws: BenchError.self) { try o.validate() }
        #expect(refused?.description.contains("--compression must be one of none, gzip, snappy, lz4, zstd") == true)
        for codec in BenchOptions.compressionCodecs {
            o.compression = codec
            #expect((try? o.validate()) != nil, "\(codec) is librdkafka's")
        }
        o = Self.options([.decode])
        o.consumerProperties = ["queued.max.messages.kbytes": "16384", "fetch.max.bytes": "4194304"]
        #expect((try? o.validate()) != nil)
        for bad in [["fetch.wait.max.ms": "5"], ["Queued Max": "1"], ["client.id": "a\"b"], ["client.id": ""]] {
            o.consumerProperties = bad
            let error = #expect(throws: BenchError.self, "\(bad)") { try o.validate() }
            #expect(error?.description.contains("--") == true, "the message names the option")
        }
    }

    @Test("--consumer-property reaches librdkafka: a value it refuses stops the run with librdkafka's reason")
    func consumerPropertyReachesLibrdkafka() async throws {
        var logger = Logger(label: "bench-test")
        logger.logLevel = .critical
        var options = Self.options([.decode])
        options.latencySeconds = 0
        options.consumerProperties = ["queued.max.messages.kbytes": "not-a-number"]
        do {
            _ = try await BenchRunner(options: options, logger: logger).run()
            Issue.record("the run should have failed on the property")
        } catch {
            #expect("\(error)".contains("queued.max.messages.kbytes"), "\(error)")
        }
        // A value it accepts: the run completes and every sample is consumed.
        options.consumerProperties = ["queued.max.messages.kbytes": "4096"]
        let report = try await BenchRunner(options: options, logger: logger).run()
        #expect(report.rawConsume?.samples == 1_500)
        #expect(report.runs.allSatisfy { $0.processed == $0.produced })
    }

    @Test("the generated records decode, and probes are recognised")
    func stream() throws {
        let o = Self.options([.decode])
        let stream = SyntheticStream(shape: .init(o), seed: 7)
        var buffer: [UInt8] = []
        _ = stream.sample(12, into: &buffer)
        let record = try JSONDecoder().decode(CodableSampleRecord.self, from: Data(buffer))
        #expect(record.id == "b00000000000c")
        #expect(record.teachers.count == o.teacherVersions)
        #expect(record.features?.count == o.features)
        // The protobuf record carries the same values, late labels too; a probe is undecodable as protobuf.
        var proto: [UInt8] = []
        let fate = stream.sample(12, format: .protobuf, into: &proto)
        #expect(fate == stream.sample(12, into: &buffer))
        let decoder = ProtobufSampleDecoder(classes: o.classes, features: o.features)
        let json = SampleDecoder(classes: o.classes, features: o.features)
        for i in 0..<200 {
            var a: [UInt8] = [], b: [UInt8] = []
            _ = stream.sample(i, into: &a)
            _ = stream.sample(i, format: .protobuf, into: &b)
            #expect(try decoder.decode(b) == json.decode(a), "sample \(i)")
        }
        #expect(try decoder.decodeLabel(stream.lateLabel(5, label: 2, format: .protobuf))
                    == json.decodeLabel(stream.lateLabel(5, label: 2)))
        let probe = BenchProbe(producedBefore: 99, partition: 3, sentNanos: 12345, isEnd: true, timed: false)
        #expect(throws: RecordError.self) { try decoder.decode(probe.bytes) }
        #expect(BenchProbe(probe.bytes) == probe)
        #expect(BenchProbe(buffer) == nil)
    }
}
