import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// The state directory fills up or turns read-only under a running daemon: it never commits an offset ahead of
/// its durable checkpoint, says so (metric, `/readyz`, log), keeps processing, and a restart after a shutdown it
/// could not checkpoint loses and doubles nothing.
@Suite("State directory full or read-only", .serialized, .hangGuard())
struct StateDirectoryTests {
    struct Figures: CustomStringConvertible {
        var fault: String
        var checkpointFailures = 0
        var committedAhead = 0
        var readyWhileFailing = true
        var reason = ""
        var shutdownError = ""
        var resumedFrom: Int64 = -1
        var lost = 0, duplicated = 0, unexpected = 0
        var windowsMissing = 0, windowsMismatched = 0, windowsCompared = 0
        var committed: Int64 = 0
        var description: String {
            "figure: fault=\(fault) checkpoint_failures=\(checkpointFailures) committed_ahead_of_checkpoint="
                + "\(committedAhead) ready_while_failing=\(readyWhileFailing) resumed_from=\(resumedFrom) "
                + "lost=\(lost) duplicated=\(duplicated) windows_mismatched=\(windowsMismatched) "
                + "windows_missing=\(windowsMissing)"
        }
    }

    /// Fails every state write with `errno` while broken, like a full (ENOSPC) or read-only (EROFS) volume.
    final class BreakableStateIO: StateFileIO {
        let broken = Mutex(false)
        let code: Int32
        private let real = StatePOSIXFileIO()
        init(errno code: Int32) { self.code = code }
        private func check() throws { if broken.withLock({ $0 }) { throw StateIOFailure(errno: code) } }
        func open(_ path: String, flags: Int32, mode: mode_t) throws -> Int32 {
            if flags & O_CREAT != 0 { try check() }
            return try real.open(path, flags: flags, mode: mode)
        }
        func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws -> Int {
            try check()
            return try real.write(fd, bytes)
        }
        func pwrite(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws -> Int {
            try check()
            return try real.pwrite(fd, bytes, at: offset)
        }
        func fsync(_ fd: Int32) throws { try real.fsync(fd) }
        func close(_ fd: Int32) throws { try real.close(fd) }
        func rename(_ source: String, _ destination: String) throws { try check(); try real.rename(source, destination) }
        func link(_ source: String, _ destination: String) throws { try check(); try real.link(source, destination) }
        func unlink(_ path: String) throws { try real.unlink(path) }
        func mkdir(_ path: String, mode: mode_t) throws { try check(); try real.mkdir(path, mode: mode) }
        func fsyncDirectory(_ path: String) throws { try real.fsyncDirectory(path) }
    }

    @Test("A failing state volume (ENOSPC, EROFS through the I/O seam): nothing committed ahead, reported, recovered",
          arguments: [ENOSPC, EROFS])
    func failingVolume(code: Int32) async throws {
        let io = BreakableStateIO(errno: code)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distilld-statefail-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let f = try await Self.run(code == ENOSPC ? "seam-ENOSPC" : "seam-EROFS", stateDir: dir, stateIO: io,
                                   breakState: { io.broken.withLock { $0 = true } },
                                   repairState: { io.broken.withLock { $0 = false } })
        Self.check(f, expecting: code == ENOSPC ? "ENOSPC" : "EROFS")
    }

    /// A real tmpfs volume, filled up or remounted read-only; needs the right to mount (root in this container).
    @Test("A real state volume (tmpfs) filled up, then remounted read-only", .enabled(if: Tmpfs.mountable),
          arguments: ["full", "read-only"])
    func realVolume(fault: String) async throws {
        let volume = try Tmpfs(megabytes: 64)
        defer { volume.unmount() }
        let stateDir = volume.path + "/state"
        let filler = volume.path + "/filler"
        let f = try await Self.run("tmpfs-\(fault)", stateDir: stateDir, stateIO: nil,
                                   breakState: {
                                       if fault == "full" { Tmpfs.fill(filler) } else { try volume.remount(readOnly: true) }
                                   },
                                   repairState: {
                                       if fault == "full" { unlink(filler) } else { try volume.remount(readOnly: false) }
                                   })
        Self.check(f, expecting: fault == "full" ? "ENOSPC" : "EROFS")
    }

    static func check(_ f: Figures, expecting errnoName: String) {
        print(f)
        #expect(f.checkpointFailures > 0, "the failing volume was noticed")
        #expect(f.committedAhead == 0, "no offset committed ahead of the durable checkpoint")
        #expect(!f.readyWhileFailing, "/readyz reports the failure")
        #expect(f.reason.contains(errnoName), "the reason names the errno: \(f.reason)")
        #expect(f.shutdownError.contains("final checkpoint could not be written"), "\(f.shutdownError)")
        #expect(f.lost == 0 && f.duplicated == 0 && f.unexpected == 0)
        #expect(f.windowsMissing == 0 && f.windowsMismatched == 0 && f.windowsCompared > 50)
        #expect(f.committed == Int64(RotationScenario().records().count), "every sample committed at the end")
    }

    /// Half the input is processed and checkpointed; then the volume breaks while the rest arrives; a graceful
    /// shutdown cannot write its final checkpoint; the volume is repaired and a second run finishes the input.
    static func run(_ name: String, stateDir: String, stateIO: (any StateFileIO)?,
                    breakState: @escaping @Sendable () throws -> Void,
                    repairState: @escaping @Sendable () throws -> Void) async throws -> Figures {
        let broker = try DaemonEndToEndTests.brokerWithTopics(samplePartitions: 1)
        let yaml = scenarioConfig + """

            brokers: "\(broker.bootstrapServers)"
            consumer_group: statefail-\(UUID().uuidString.prefix(8))
            state: {dir: "\(stateDir)", interval: 200ms}
            http: {enabled: false}
            kafka: {session.timeout.ms: "6000", heartbeat.interval.ms: "500"}
            """
        let config = try DistillConfig.parse(yaml)
        let records = RotationScenario().records()
        let referenceOutputs = DistillEngineTests.run(records, engine: try DistillEngine(config: config))
        let expected = HostileInputTests.alertIDs(referenceOutputs)
        let expectedFigures = try CrashRecoveryTests.snapshotFigures(of: referenceOutputs, config: config)
        let half = records.count / 2
        let end = Int64(records.count)
        let samples0 = TopicPartition("samples", 0)
        let producer = try KafkaProducer(properties: broker.clientProperties, logger: DaemonEndToEndTests.quiet)
        func feed(_ part: ArraySlice<[UInt8]>) async throws {
            for bytes in part { try producer.send(ProducerRecord(topic: "samples", partition: 0, value: bytes)) { _ in } }
            try await producer.flush(timeout: .seconds(30))
        }
        let probe = try KafkaConsumer(groupID: config.consumerGroup, properties: broker.clientProperties)
        func committed() async throws -> Int64 { try await probe.committed([samples0])[samples0] ?? 0 }
        /// The offset the newest checkpoint on disk covers (read with a store of its own, as a restart would).
        func durable() -> Int64 {
            ((try? StateStore(directory: stateDir).load().checkpoint)?.offsets
                .first { $0.key.partition == 0 && $0.key.topic == "samples" }?.value) ?? 0
        }
        var figures = Figures(fault: name)

        func daemon(_ log: HookLog, _ metrics: DistillMetrics, _ health: HealthState) -> DistillService {
            stateIO.map {
                DistillService(config: config, logger: DaemonEndToEndTests.quiet, hooks: log.hooks(), metrics: metrics,
                               health: health, stateIO: $0)
            } ?? DistillService(config: config, logger: DaemonEndToEndTests.quiet, hooks: log.hooks(),
                                metrics: metrics, health: health)
        }

        // Run 1: half the input, checkpointed; then the volume breaks.
        try await feed(records[..<half])
        let log = HookLog(), metrics = DistillMetrics(), health = HealthState()
        let first = ServiceGroup(configuration: .init(services: [daemon(log, metrics, health)],
                                                      logger: DaemonEndToEndTests.quiet))
        let running = Task { try await first.run() }
        let deadline = ContinuousClock.now + .seconds(90)
        while (log.covered.withLock { $0[samples0] } ?? 0) < Int64(half) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        try breakState()
        try await feed(records[half...])
        // While broken: the input is processed, but the group's offset never passes the checkpoint on disk.
        let broken = ContinuousClock.now
        var sawFailure = false
        while ContinuousClock.now - broken < .seconds(4) {
            let c = try await committed()  // first the commit, then the disk: the disk only moves forward
            if c > durable() { figures.committedAhead += 1 }
            let status = health.status
            if !status.isReady && status.reason.contains("checkpoint failing") {
                sawFailure = true
                figures.reason = status.reason
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        figures.readyWhileFailing = !sawFailure
        figures.checkpointFailures = Self.counter("distilld_checkpoint_failures_total", in: metrics.render())
        // A graceful shutdown cannot write its final checkpoint: it must say so and commit nothing more.
        await first.triggerGracefulShutdown()
        do { try await running.value } catch { figures.shutdownError = "\(error)" }
        if try await committed() > durable() { figures.committedAhead += 1 }
        figures.resumedFrom = durable()
        #expect(figures.resumedFrom < end, "the broken volume kept the last checkpoints from landing")

        // Run 2: the volume is repaired; the restart resumes at the durable checkpoint and finishes the input.
        try repairState()
        let log2 = HookLog()
        let second = ServiceGroup(configuration: .init(services: [daemon(log2, DistillMetrics(), HealthState())],
                                                       logger: DaemonEndToEndTests.quiet))
        let running2 = Task { try await second.run() }
        let deadline2 = ContinuousClock.now + .seconds(120)
        while (log2.covered.withLock { $0[samples0] } ?? 0) < end && ContinuousClock.now < deadline2 {
            try await Task.sleep(for: .milliseconds(100))
        }
        let settle = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < settle {
            if try await readAll("distill.alerts", partitions: 3, bootstrap: broker.bootstrapServers).count
                >= expected.count { break }
            try await Task.sleep(for: .milliseconds(300))
        }
        await second.triggerGracefulShutdown()
        try await running2.value
        figures.committed = try await committed()
        await probe.close()
        await producer.close()

        let ids = try await readAll("distill.alerts", partitions: 3, bootstrap: broker.bootstrapServers)
            .compactMap { m -> String? in
                (try? JSONSerialization.jsonObject(with: Data(m.value)) as? [String: Any])?["id"] as? String
            }
        figures.duplicated = ids.count - Set(ids).count
        figures.lost = expected.subtracting(ids).count
        figures.unexpected = Set(ids).subtracting(expected).count
        let check = CrashRecoveryTests.compareSnapshots(
            try await readAll("distill.windows", partitions: 3, bootstrap: broker.bootstrapServers),
            with: expectedFigures)
        figures.windowsCompared = check.compared
        figures.windowsMismatched = check.mismatched + check.unreadable
        figures.windowsMissing = check.missing
        #expect(!expected.isEmpty)
        return figures
    }

    /// The value of an unlabelled counter in Prometheus text.
    static func counter(_ name: String, in text: String) -> Int {
        text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? 0
    }
}

/// A small tmpfs mounted for one test (real ENOSPC and EROFS); needs `mount`, which root in a container has.
struct Tmpfs {
    let path: String

    static let mountable: Bool = {
        guard getuid() == 0, let probe = try? Tmpfs(megabytes: 1) else { return false }
        probe.unmount()
        return true
    }()

    init(megabytes: Int) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("distilld-volume-\(UUID())").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try Self.mount(["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path])
    }

    func remount(readOnly: Bool) throws {
        // EBUSY while a file is open for writing on it: the daemon's writes are short, so try again.
        for _ in 0..<50 {
            if (try? Self.mount(["-o", "remount,\(readOnly ? "ro" : "rw")", path])) != nil { return }
            usleep(20_000)
        }
        try Self.mount(["-o", "remount,\(readOnly ? "ro" : "rw")", path])
    }

    func unmount() {
        _ = try? Self.command("/bin/umount", [path])
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Writes zeros to `file` until the volume is full.
    static func fill(_ file: String) {
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0, count: 1 << 16)
        while chunk.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) > 0 {}
    }

    private static func mount(_ arguments: [String]) throws {
        let status = try command("/bin/mount", arguments)
        if status != 0 { throw CocoaError(.fileWriteUnknown, userInfo: ["mount": arguments.joined(separator: " ")]) }
    }

    private static func command(_ path: String, _ arguments: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }
}
