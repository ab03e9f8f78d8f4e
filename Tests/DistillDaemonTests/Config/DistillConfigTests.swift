import DistillCore
import DistillDaemon
import Foundation
import Testing

/// The whole config file: defaults, overrides, and errors that name the line and key.
@Suite("distilld config")
struct DistillConfigTests {
    static let minimal = "model: {classes: [a, b, c], rare_classes: [c], features: 4}\n"

    @Test("The shipped config/distilld.yaml is valid and says what the README says")
    func shipped() throws {
        let config = try DistillConfig.load(path: packageRoot.appendingPathComponent("config/distilld.yaml").path)
        #expect(config.broker.brokers == .embedded(brokers: 1))
        #expect(config.model.classes.count == 16)
        #expect(config.model.rareClasses == [15])
        #expect(config.model.features == 64)
        #expect(config.statistics.replicates == 64)
        #expect(config.statistics.windows == [
            .eventTime("fast", size: 3_600_000, slide: 60_000, grace: 60_000),
            .eventTime("drift", size: 14 * 86_400_000, slide: 3_600_000, grace: 300_000),
        ])
        let kl = try #require(config.triggers.rules.first { $0.name == "teacher_kl_drift" })
        #expect(kl.threshold == 0.05 && kl.window == "drift" && kl.cooldownMillis == 3_600_000)
        #expect(config.triggers.baselines.rareClassAccuracy == [15: 0.87])
        #expect(config.state.onCorrupt == .fail)
        #expect(config.http.host == "127.0.0.1" && config.http.port == 9464)
        #expect(config.student.distiller.model.hiddenLayers == [64])
        #expect(config.teacher.strategy == .latest)
        #expect(config.topics.labels == "labels")
    }

    @Test("A minimal config gets the documented defaults")
    func defaults() throws {
        let config = try DistillConfig.parse(Self.minimal)
        #expect(config.statistics.windows.map(\.name) == ["fast", "drift"])
        #expect(config.triggers.rules.count == 8)
        #expect(config.triggers.rareClasses == [2])
        #expect(config.consumerGroup == "distilld")
        #expect(config.student.enabled)
        #expect(config.revision == (try DistillConfig.parse(Self.minimal)).revision, "revision is deterministic")
        #expect(config.revision != (try DistillConfig.parse(Self.minimal + "consumer_group: x\n")).revision)
    }

    @Test("Overrides apply: windows, a trigger threshold, strategy, count windows")
    func overrides() throws {
        let yaml = Self.minimal + """
            windows:
              fast: {size: 10m, slide: 1m}
              recent: {count: 5000, slide_count: 500}
              drift: {size: 1d, slide: 1h, grace: 30s}
            triggers:
              student_agreement: {threshold: 0.9, mode: point, window: recent, cooldown: 5m}
            teacher: {strategy: ensemble, ensemble_size: 3}
            labels: {join_window: 2m}
            """
        let config = try DistillConfig.parse(yaml)
        #expect(config.statistics.windows.map(\.name) == ["fast", "recent", "drift"])
        #expect(config.statistics.windows[1] == .count("recent", size: 5000, slide: 500))
        let rule = try #require(config.triggers.rules.first { $0.name == "student_agreement" })
        #expect(rule.threshold == 0.9 && rule.mode == .point && rule.window == "recent")
        #expect(rule.cooldownMillis == 300_000)
        #expect(config.teacher.strategy == .ensemble(count: 3))
        #expect(config.labels.joinWindowMillis == 120_000)
    }

    @Test("Errors name the line and the key", arguments: [
        ("model: {classes: [a, b]}\nwindow: {}\n", 2, "window", "unknown key"),
        ("model: {classes: [a, b], featurs: 3}\n", 1, "model.featurs", "unknown key"),
        ("model: {classes: [a]}\n", 1, "model.classes", "at least 2"),
        ("model: {classes: [a, b], rare_classes: [z]}\n", 1, "model.rare_classes", "'z' is not one of"),
        ("model: {classes: [a, b]}\nstudent: {enabled: true}\n", 2, "student", "needs model.features"),
        ("model: {classes: [a, b]}\nwindows:\n  fast: {size: 1m, slide: 1h}\n", 3, "windows.fast.slide",
         "larger than the size"),
        ("model: {classes: [a, b]}\nwindows:\n  fast: {size: 1 hour}\n", 3, "windows.fast.size", "a duration"),
        ("model: {classes: [a, b]}\ntriggers:\n  teacher_kl_drift: {threshold: -0.1}\n", 3,
         "triggers.teacher_kl_drift.threshold", "negative"),
        ("model: {classes: [a, b]}\ntriggers:\n  kl_drift: {threshold: 0.1}\n", 3, "triggers.kl_drift",
         "unknown trigger"),
        ("model: {classes: [a, b]}\ntriggers:\n  teacher_kl_drift: {window: slow}\n", 3, "triggers.teacher_kl_drift.window",
         "slow"),
        ("model: {classes: [a, b]}\nstate: {on_corrupt: ignore}\n", 2, "state.on_corrupt", "fail or reset"),
        ("model: {classes: [a, b]}\nhttp: {listen: 9464}\n", 2, "http.listen", "host:port"),
        ("model: {classes: [a, b]}\nteacher: {strategy: lts}\n", 2, "teacher.lts_version", "pinned"),
        ("model: {classes: [a, b]}\nbaselines: {rare_class_accuracy: {q: 0.5}}\n", 2,
         "baselines.rare_class_accuracy.q", "not one of"),
        ("model: {classes: [a, b]}\nstatistics: {replicates: -1}\n", 2, "statistics.replicates", "0...10000"),
        ("model: {classes: [a, b], features: 2}\nstudent: {loss: mse}\n", 2, "student.loss", "hinton, dkd"),
    ])
    func errors(yaml: String, line: Int, key: String, message: String) {
        let error = #expect(throws: ConfigError.self) { try DistillConfig.parse(yaml, file: "d.yaml") }
        #expect(error?.file == "d.yaml")
        #expect(error?.key == key, "\(error?.description ?? "no error")")
        #expect(error?.line == line, "\(error?.description ?? "no error")")
        #expect(error?.message.contains(message) == true, "\(error?.description ?? "no error")")
    }

    @Test("check-config reports ok or the located error")
    func check() throws {
        let path = packageRoot.appendingPathComponent("config/distilld.yaml").path
        let cwd = FileManager.default.currentDirectoryPath
        _ = FileManager.default.changeCurrentDirectoryPath(packageRoot.path)
        defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
        let ok = try DistillConfig.check(path: path).get()
        #expect(ok.contains("ok (revision"))
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID()).yaml")
        try Data("model: {classes: [a, b]}\nstate: {interval: 1ms}\n".utf8).write(to: bad)
        guard case .failure(let error) = DistillConfig.check(path: bad.path) else {
            Issue.record("a 1 ms state interval must be refused")
            return
        }
        #expect(error.description.hasSuffix("state.interval: must be at least 100ms"))
        #expect(error.line == 2)
    }
}
