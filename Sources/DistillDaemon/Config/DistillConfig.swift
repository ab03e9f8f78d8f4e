import DistillCore
import DistillWire
import Foundation
import Yams

// MARK: - DistillConfig

/// The whole of distilld's configuration (`config/distilld.yaml`), validated. `config/README.md` documents every key.
public struct DistillConfig: Sendable {
    /// Where Kafka is and the librdkafka pass-through properties.
    public var broker: BrokerSettings
    /// The class taxonomy and the student's input width.
    public var model: ModelTaxonomy
    /// Topic names (they may differ from `streams/topics.yaml`'s on a real cluster).
    public var topics: DistillTopics
    /// The consumer group of the `samples` (and `labels`) consumer.
    public var consumerGroup: String
    /// Windows, bootstrap and calibration-window statistics.
    public var statistics: DistillStatisticsConfig
    /// The trigger matrix: rules, rare classes and baselines.
    public var triggers: TriggerMatrixConfig
    /// The calibration checks.
    public var calibration: CalibrationCheckConfig
    /// The online student.
    public var student: StudentSettings
    /// Which teacher the student learns from, and when a teacher counts as regressed.
    public var teacher: TeacherSettings
    /// The join of late labels to samples.
    public var labels: LabelJoinSettings
    /// Durable state checkpoints.
    public var state: StateSettings
    /// Several instances in one consumer group (`scale_out`).
    public var scaleOut: ScaleOutSettings
    /// The metrics and health endpoint.
    public var http: HTTPSettings
    /// Log format and level.
    public var logging: LoggingSettings
    /// A short hash of the file's bytes, stamped on every alert so a reader knows which thresholds applied.
    public var revision: String

    /// Reads and validates a config file.
    public static func load(path: String) throws(ConfigError) -> DistillConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, line: nil, key: "", message: "cannot read the config file")
        }
        return try parse(String(decoding: data, as: UTF8.self), file: path)
    }

    /// Parses and validates config YAML. Every error names the file, line and key.
    public static func parse(_ yaml: String, file: String = "<string>") throws(ConfigError) -> DistillConfig {
        var root = try YAMLMap.document(yaml, file: file)
        let broker = try BrokerSettings.read(from: &root)
        let model = try ModelTaxonomy.read(&root)
        let topics = try DistillTopics.read(&root)
        let consumerGroup = try root.string("consumer_group") ?? "distilld"
        if consumerGroup.isEmpty { throw root.error("consumer_group", root.node("consumer_group"), "must not be empty") }
        let statistics = try readStatistics(&root, model: model)
        let triggers = try readTriggers(&root, model: model)
        var statisticsWithCalibration = statistics
        let calibration = try readCalibration(&root, statistics: &statisticsWithCalibration)
        let student = try StudentSettings.read(&root, model: model)
        let teacher = try TeacherSettings.read(&root)
        let labels = try LabelJoinSettings.read(&root)
        let state = try StateSettings.read(&root)
        let scaleOut = try ScaleOutSettings.read(&root)
        let http = try HTTPSettings.read(&root)
        let logging = try LoggingSettings.read(&root)
        try root.finish()
        var config = DistillConfig(
            broker: broker, model: model, topics: topics, consumerGroup: consumerGroup,
            statistics: statisticsWithCalibration,
            triggers: triggers, calibration: calibration, student: student, teacher: teacher, labels: labels,
            state: state, scaleOut: scaleOut, http: http, logging: logging, revision: DistillConfig.revision(of: yaml))
        try config.validate(yaml: yaml, file: file)
        config.revision = DistillConfig.revision(of: yaml)
        return config
    }

    /// Cross-checks the sections with DistillCore's own validation, mapping its setting paths to lines.
    func validate(yaml: String, file: String) throws(ConfigError) {
        let windowNames = Set(statistics.windows.map(\.name))
        if scaleOut.enabled {
            // Count windows follow arrival order over all input: no instance sees all of it.
            for w in statistics.windows + statistics.calibrationWindows {
                if case .count = w.kind {
                    throw ConfigError(file: file, line: DistillConfig.line(of: "scale_out.enabled", in: yaml),
                                      key: "scale_out.enabled", message: "window '\(w.name)' is a count window; with "
                                          + "scale_out every window must be an event-time window")
                }
            }
        }
        do {
            try statistics.validate()
            try triggers.validate(windows: windowNames, classes: model.classes.count)
            try calibration.validate()
        } catch {
            throw ConfigError(file: file, line: DistillConfig.line(of: error.setting, in: yaml), key: error.setting,
                              message: error.message)
        }
        do {
            try student.distiller.model.validate()
            try student.distiller.optimizer.validate()
            try teacher.health.validate()
        } catch {
            throw ConfigError(file: file, line: DistillConfig.line(of: "student", in: yaml), key: "student",
                              message: "\(error)")
        }
    }

    /// FNV-1a 64 of the file bytes, in hex: stable across processes and machines.
    static func revision(of yaml: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in yaml.utf8 {
            h ^= UInt64(byte)
            h &*= 0x0000_0100_0000_01b3
        }
        return String(h, radix: 16)
    }

    /// The line of a dotted key path (`windows.fast.slide`), or of its nearest existing parent.
    static func line(of path: String, in yaml: String) -> Int? {
        guard let root = try? Yams.compose(yaml: yaml) else { return nil }
        var node = root
        var line = root.mark?.line
        for part in path.split(separator: ".") {
            guard let mapping = node.mapping,
                  let (key, value) = mapping.first(where: { $0.key.scalar?.string == String(part) }) else { break }
            line = key.mark?.line ?? line
            node = value
        }
        return line
    }
}

// MARK: - Model taxonomy

/// The classes the models predict, which of them are rare, and the student's input width.
public struct ModelTaxonomy: Sendable, Equatable {
    /// Class names; C is their count and a label is an index into this list.
    public var classes: [String]
    /// Indices of the rare classes (per-class drift is watched for these).
    public var rareClasses: [Int]
    /// D, the length of a sample's `features`, or nil when samples carry none (then no online student).
    public var features: Int?

    static func read(_ root: inout YAMLMap) throws(ConfigError) -> ModelTaxonomy {
        guard var m = try root.map("model") else {
            throw root.error("model", nil, "missing; list the class names under model.classes")
        }
        guard let classes = try m.stringList("classes") else {
            throw m.error("classes", nil, "missing; list the class names (C = their count)")
        }
        guard classes.count >= 2 else { throw m.error("classes", m.node("classes"), "needs at least 2 classes") }
        if Set(classes).count != classes.count {
            throw m.error("classes", m.node("classes"), "class names must be unique")
        }
        var rare: [Int] = []
        for name in try m.stringList("rare_classes") ?? [] {
            guard let k = classes.firstIndex(of: name) else {
                throw m.error("rare_classes", m.node("rare_classes"), "'\(name)' is not one of model.classes")
            }
            rare.append(k)
        }
        let features = try m.int("features")
        if let features, features < 1 { throw m.error("features", m.node("features"), "must be at least 1") }
        try m.finish()
        return ModelTaxonomy(classes: classes, rareClasses: rare, features: features)
    }
}

// MARK: - Topics

/// The names of the topics distilld reads and writes.
public struct DistillTopics: Sendable, Equatable {
    public var samples = "samples"
    /// nil when late labels are not consumed.
    public var labels: String? = "labels"
    public var teachers = "teachers"
    public var alerts = "distill.alerts"
    public var calibration = "distill.calibration"
    public var windows = "distill.windows"
    public var students = "distill.students"
    public var deadLetter = "distill.deadletter"
    /// Scale-out: sealed partials and progress, per source partition, read by the merging instance.
    public var partials = "distill.partials"
    /// Scale-out: each source partition's latest state, read by the partition's next owner.
    public var changelog = "distill.changelog"
    /// Scale-out: one partition, the merge lease (a consumer group elects the merger) and the merger's checkpoints.
    public var merge = "distill.merge"
    /// The wire format of each input topic's records (`topics.formats`); JSON unless configured.
    public var formats = InputFormats()

    /// The record format of the `samples` and `labels` topics (teacher records are always JSON).
    public struct InputFormats: Sendable, Equatable {
        /// Format of the `samples` topic.
        public var samples: RecordFormat = .json
        /// Format of the `labels` topic.
        public var labels: RecordFormat = .json

        /// Creates the formats; JSON for both by default.
        public init(samples: RecordFormat = .json, labels: RecordFormat = .json) {
            self.samples = samples
            self.labels = labels
        }

        static func read(_ m: inout YAMLMap) throws(ConfigError) -> InputFormats {
            var formats = InputFormats()
            func format(_ key: String, _ m: inout YAMLMap) throws(ConfigError) -> RecordFormat? {
                guard let text = try m.string(key) else { return nil }
                guard let format = RecordFormat(rawValue: text) else {
                    throw m.error(key, m.node(key), "must be json or protobuf, not '\(text)'")
                }
                return format
            }
            formats.samples = try format("samples", &m) ?? .json
            formats.labels = try format("labels", &m) ?? .json
            if let node = m.node("teachers") {
                throw m.error("teachers", node, "teacher records are always JSON; only samples and labels have a "
                                  + "format")
            }
            try m.finish()
            return formats
        }
    }

    static func read(_ root: inout YAMLMap) throws(ConfigError) -> DistillTopics {
        var topics = DistillTopics()
        guard var m = try root.map("topics") else { return topics }
        func name(_ key: String, _ current: String, _ m: inout YAMLMap) throws(ConfigError) -> String {
            guard let v = try m.string(key) else { return current }
            guard TopicCatalog.isValidTopicName(v) else {
                throw m.error(key, m.node(key), "'\(v)' is not a valid Kafka topic name")
            }
            return v
        }
        topics.samples = try name("samples", topics.samples, &m)
        if let labels = try m.string("labels") {
            topics.labels = labels.isEmpty ? nil : try name("labels", labels, &m)
        }
        topics.teachers = try name("teachers", topics.teachers, &m)
        topics.alerts = try name("alerts", topics.alerts, &m)
        topics.calibration = try name("calibration", topics.calibration, &m)
        topics.windows = try name("windows", topics.windows, &m)
        topics.students = try name("students", topics.students, &m)
        topics.deadLetter = try name("deadletter", topics.deadLetter, &m)
        topics.partials = try name("partials", topics.partials, &m)
        topics.merge = try name("merge", topics.merge, &m)
        topics.changelog = try name("changelog", topics.changelog, &m)
        if var formats = try m.map("formats") { topics.formats = try InputFormats.read(&formats) }
        try m.finish()
        return topics
    }
}

// MARK: - Statistics, triggers, calibration

extension DistillConfig {
    static func readWindow(_ m: inout YAMLMap, name: String) throws(ConfigError) -> WindowSpec {
        if let count = try m.int("count") {
            let slide = try m.int("slide_count") ?? count
            try m.finish()
            return .count(name, size: count, slide: slide)
        }
        guard let size = try m.duration("size") else {
            throw m.error("size", nil, "missing; give size and slide (e.g. size: 1h, slide: 1m) or count")
        }
        let slide = try m.duration("slide") ?? size
        let grace = try m.duration("grace") ?? 0
        try m.finish()
        if slide > size {
            throw m.error("slide", m.node("slide"), "the slide (\(slide) ms) is larger than the size (\(size) ms)")
        }
        return .eventTime(name, size: size, slide: slide, grace: grace)
    }

    static func readStatistics(_ root: inout YAMLMap, model: ModelTaxonomy) throws(ConfigError)
        -> DistillStatisticsConfig {
        var config = DistillStatisticsConfig(classes: model.classes.count)
        if var m = try root.map("statistics") {
            config.replicates = try m.int("replicates") ?? config.replicates
            config.bins = try m.int("bins") ?? config.bins
            config.confidenceLevel = try m.double("confidence_level") ?? config.confidenceLevel
            config.calibrationSampleCapacity = try m.int("calibration_sample_capacity")
                ?? config.calibrationSampleCapacity
            config.calibrationPerSlice = try m.bool("calibration_per_slice") ?? config.calibrationPerSlice
            try m.finish()
        }
        if var m = try root.map("windows") {
            var windows: [WindowSpec] = []
            for name in m.keys {
                guard var w = try m.map(name) else { continue }
                windows.append(try readWindow(&w, name: name))
            }
            try m.finish()
            guard !windows.isEmpty else { throw root.error("windows", root.node("windows"), "define at least one") }
            config.windows = windows
        }
        return config
    }

    static func readTriggers(_ root: inout YAMLMap, model: ModelTaxonomy) throws(ConfigError) -> TriggerMatrixConfig {
        var config = TriggerMatrixConfig(rareClasses: model.rareClasses)
        if var m = try root.map("triggers") {
            for name in m.keys {
                guard var r = try m.map(name) else { continue }
                guard let index = config.rules.firstIndex(where: { $0.name == name }) else {
                    let known = config.rules.map(\.name).joined(separator: ", ")
                    throw m.error(name, m.node(name), "unknown trigger; the triggers are \(known)")
                }
                var rule = config.rules[index]
                rule.threshold = try r.double("threshold") ?? rule.threshold
                rule.secondaryThreshold = try r.double("ece_tolerance") ?? rule.secondaryThreshold
                if let mode = try r.string("mode") {
                    guard let parsed = TriggerMode(rawValue: mode) else {
                        throw r.error("mode", r.node("mode"), "must be significant or point, not '\(mode)'")
                    }
                    rule.mode = parsed
                }
                rule.minSamples = try r.int("min_samples") ?? rule.minSamples
                rule.hysteresis = try r.double("hysteresis") ?? rule.hysteresis
                rule.cooldownMillis = try r.duration("cooldown") ?? rule.cooldownMillis
                rule.window = try r.string("window") ?? rule.window
                rule.enabled = try r.bool("enabled") ?? rule.enabled
                try r.finish()
                if rule.threshold < 0 && rule.metric != .teacherMajorVersion {
                    throw r.error("threshold", r.node("threshold"), "must not be negative")
                }
                config.rules[index] = rule
            }
            try m.finish()
        }
        if var m = try root.map("baselines") {
            config.baselines.qualityGap = try m.double("quality_gap") ?? config.baselines.qualityGap
            if var rare = try m.map("rare_class_accuracy") {
                for name in rare.keys {
                    guard let k = model.classes.firstIndex(of: name) else {
                        throw rare.error(name, rare.node(name), "'\(name)' is not one of model.classes")
                    }
                    config.baselines.rareClassAccuracy[k] = try rare.double(name)
                }
                try rare.finish()
            }
            try m.finish()
        }
        return config
    }

    static func readCalibration(_ root: inout YAMLMap, statistics: inout DistillStatisticsConfig) throws(ConfigError)
        -> CalibrationCheckConfig {
        var config = CalibrationCheckConfig()
        guard var m = try root.map("calibration") else { return config }
        if var w = try m.map("window") {
            statistics.calibrationWindows = [try readWindow(&w, name: "calibration")]
        }
        config.eceDriftThreshold = try m.double("ece_drift_threshold") ?? config.eceDriftThreshold
        config.temperatureTolerance = try m.double("temperature_tolerance") ?? config.temperatureTolerance
        config.minSamples = try m.int("min_samples") ?? config.minSamples
        if let mode = try m.string("mode") {
            guard let parsed = TriggerMode(rawValue: mode) else {
                throw m.error("mode", m.node("mode"), "must be significant or point, not '\(mode)'")
            }
            config.mode = parsed
        }
        if var b = try m.map("baseline_ece") {
            for version in b.keys { config.baselineECE[version] = try b.double(version) }
            try b.finish()
        }
        try m.finish()
        return config
    }
}

// MARK: - Student and teacher

/// The online student: model shape, loss, optimizer, mean teacher and checkpoint gate.
public struct StudentSettings: Sendable {
    /// Whether the online student trains at all (it needs `model.features`).
    public var enabled: Bool
    /// The trainer's settings.
    public var distiller: OnlineDistillerConfiguration
    /// When a checkpoint is due and what it must pass.
    public var checkpoints: StudentCheckpointPolicy

    static func read(_ root: inout YAMLMap, model: ModelTaxonomy) throws(ConfigError) -> StudentSettings {
        var m = try root.map("student")
        let enabled = try m?.bool("enabled") ?? (model.features != nil)
        if enabled && model.features == nil {
            throw root.error("student", root.node("student"), "the online student needs model.features (D)")
        }
        let hidden = try m?.intList("hidden") ?? []
        let lossName = try m?.string("loss") ?? "hinton"
        let loss: KDLoss
        switch lossName {
        case "hinton": loss = .hinton(alpha: Float(try m?.double("alpha") ?? 0.9))
        case "dkd":
            loss = .dkd(alpha: Float(try m?.double("dkd_alpha") ?? 1), beta: Float(try m?.double("dkd_beta") ?? 8))
        case "auxiliary": loss = .auxiliary(distillationWeight: Float(try m?.double("distillation_weight") ?? 1))
        default:
            throw m!.error("loss", m!.node("loss"), "must be hinton, dkd or auxiliary, not '\(lossName)'")
        }
        var optimizer = StudentOptimizerConfiguration()
        if let kind = try m?.string("optimizer") {
            switch kind {
            case "adam": optimizer.kind = .adam
            case "sgd": optimizer.kind = .sgd
            default: throw m!.error("optimizer", m!.node("optimizer"), "must be adam or sgd, not '\(kind)'")
            }
        }
        optimizer.learningRate = Float(try m?.double("learning_rate") ?? Double(optimizer.learningRate))
        optimizer.momentum = Float(try m?.double("momentum") ?? Double(optimizer.momentum))
        if let clip = try m?.double("clip_norm") { optimizer.clipNorm = clip > 0 ? Float(clip) : nil }
        var meanTeacher = MeanTeacherConfiguration()
        meanTeacher.initialDecay = Float(try m?.double("ema_initial_decay") ?? Double(meanTeacher.initialDecay))
        meanTeacher.finalDecay = Float(try m?.double("ema_decay") ?? Double(meanTeacher.finalDecay))
        meanTeacher.consistencyWeight = Float(try m?.double("consistency_weight")
            ?? Double(meanTeacher.consistencyWeight))
        let distiller = OnlineDistillerConfiguration(
            model: StudentModelConfiguration(
                inputDimension: model.features ?? 1, classCount: model.classes.count, hiddenLayers: hidden,
                auxiliaryHead: loss.needsAuxiliaryHead, seed: UInt64(try m?.int("seed") ?? 42)),
            loss: loss, temperature: Float(try m?.double("temperature") ?? 2), optimizer: optimizer,
            batchSize: try m?.int("batch_size") ?? 16, meanTeacher: meanTeacher)
        if distiller.batchSize < 1 { throw m!.error("batch_size", m!.node("batch_size"), "must be at least 1") }
        if !(distiller.temperature > 0) { throw m!.error("temperature", m!.node("temperature"), "must be > 0") }
        let checkpoints = StudentCheckpointPolicy(
            intervalSamples: try m?.int("checkpoint_every") ?? 10_000,
            minimumAgreementLower: try m?.double("gate_agreement") ?? 0.95)
        try m?.finish()
        return StudentSettings(enabled: enabled, distiller: distiller, checkpoints: checkpoints)
    }
}

/// Which teacher the student learns from, and the health policy for new teachers.
public struct TeacherSettings: Sendable {
    public var strategy: TeacherStrategy
    public var health: TeacherHealthPolicy

    static func read(_ root: inout YAMLMap) throws(ConfigError) -> TeacherSettings {
        var settings = TeacherSettings(strategy: .latest, health: TeacherHealthPolicy())
        guard var m = try root.map("teacher") else { return settings }
        switch try m.string("strategy") ?? "latest" {
        case "latest": settings.strategy = .latest
        case "lts":
            guard let version = try m.string("lts_version"), !version.isEmpty else {
                throw m.error("lts_version", m.node("strategy"), "strategy lts needs the pinned teacher version")
            }
            settings.strategy = .lts(version: version)
        case "ensemble":
            let k = try m.int("ensemble_size") ?? 3
            guard k >= 2 else { throw m.error("ensemble_size", m.node("ensemble_size"), "must be at least 2") }
            settings.strategy = .ensemble(count: k)
        case let other:
            throw m.error("strategy", m.node("strategy"), "must be latest, lts or ensemble, not '\(other)'")
        }
        _ = try m.string("lts_version")
        _ = try m.int("ensemble_size")
        if var h = try m.map("health") {
            settings.health.maximumAccuracyDrop = try h.double("max_accuracy_drop") ?? settings.health.maximumAccuracyDrop
            settings.health.maximumECEIncrease = try h.double("max_ece_increase") ?? settings.health.maximumECEIncrease
            settings.health.minimumAccuracy = try h.double("min_accuracy") ?? settings.health.minimumAccuracy
            settings.health.maximumECE = try h.double("max_ece") ?? settings.health.maximumECE
            settings.health.requireObservation = try h.bool("require_observation")
                ?? settings.health.requireObservation
            try h.finish()
        }
        try m.finish()
        return settings
    }
}

// MARK: - Operations

/// Late labels joined to samples by id.
public struct LabelJoinSettings: Sendable, Equatable {
    /// How long a sample waits for its label, and a label for its sample (event time, ms).
    public var joinWindowMillis: Int64 = 10 * 60_000
    /// The most samples and labels held while waiting; beyond it the oldest are counted and dropped.
    public var maxBuffered: Int = 50_000

    static func read(_ root: inout YAMLMap) throws(ConfigError) -> LabelJoinSettings {
        var s = LabelJoinSettings()
        guard var m = try root.map("labels") else { return s }
        s.joinWindowMillis = try m.duration("join_window") ?? s.joinWindowMillis
        s.maxBuffered = try m.int("max_buffered") ?? s.maxBuffered
        if s.maxBuffered < 1 { throw m.error("max_buffered", m.node("max_buffered"), "must be at least 1") }
        try m.finish()
        return s
    }
}

/// Durable state checkpoints.
public struct StateSettings: Sendable, Equatable {
    /// What to do with a corrupt or incompatible checkpoint at start.
    public enum OnCorrupt: String, Sendable { case fail, reset }
    public var directory = ".distilld/state"
    public var intervalMillis: Int64 = 10_000
    public var onCorrupt = OnCorrupt.fail

    static func read(_ root: inout YAMLMap) throws(ConfigError) -> StateSettings {
        var s = StateSettings()
        guard var m = try root.map("state") else { return s }
        s.directory = try m.string("dir") ?? s.directory
        s.intervalMillis = try m.duration("interval") ?? s.intervalMillis
        if s.intervalMillis < 100 { throw m.error("interval", m.node("interval"), "must be at least 100ms") }
        if let v = try m.string("on_corrupt") {
            guard let parsed = OnCorrupt(rawValue: v) else {
                throw m.error("on_corrupt", m.node("on_corrupt"), "must be fail or reset, not '\(v)'")
            }
            s.onCorrupt = parsed
        }
        try m.finish()
        return s
    }
}

/// Several instances with the same config in one consumer group. Each works on the partitions it owns and publishes
/// per-partition partials to `topics.partials`; the instance holding the merge lease folds them and emits outputs.
public struct ScaleOutSettings: Sendable, Equatable {
    public var enabled = false

    static func read(_ root: inout YAMLMap) throws(ConfigError) -> ScaleOutSettings {
        var s = ScaleOutSettings()
        guard var m = try root.map("scale_out") else { return s }
        s.enabled = try m.bool("enabled") ?? s.enabled
        try m.finish()
        return s
    }
}

/// The Prometheus `/metrics`, `/healthz` and `/readyz` endpoint.
public struct HTTPSettings: Sendable, Equatable {
    /// Loopback by default: exposing metrics is an explicit choice.
    public var host = "127.0.0.1"
    public var port = 9464
    public var enabled = true

    static func read(_ root: inout YAMLMap) throws(ConfigError) -> HTTPSettings {
        var s = HTTPSettings()
        guard var m = try root.map("http") else { return s }
        s.enabled = try m.bool("enabled") ?? s.enabled
        if let listen = try m.string("listen") {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                  (0...65535).contains(port), colon != listen.startIndex else {
                throw m.error("listen", m.node("listen"), "expected host:port such as 127.0.0.1:9464, got '\(listen)'")
            }
            s.host = String(listen[..<colon])
            s.port = port
        }
        try m.finish()
        return s
    }
}

/// How logs are written.
public struct LoggingSettings: Sendable, Equatable {
    public enum Format: String, Sendable { case human, json }
    public var format = Format.human
    public var level = "info"

    static func read(_ root: inout YAMLMap) throws(ConfigError) -> LoggingSettings {
        var s = LoggingSettings()
        guard var m = try root.map("logging") else { return s }
        if let f = try m.string("format") {
            guard let parsed = Format(rawValue: f) else {
                throw m.error("format", m.node("format"), "must be human or json, not '\(f)'")
            }
            s.format = parsed
        }
        if let level = try m.string("level") {
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(level) else {
                throw m.error("level", m.node("level"), "must be one of \(levels.joined(separator: ", "))")
            }
            s.level = level
        }
        try m.finish()
        return s
    }
}

// MARK: - check-config

extension DistillConfig {
    /// Validates a config file and, with the embedded broker, its topics file. Returns a one-line summary.
    public static func check(path: String) -> Result<String, ConfigError> {
        do {
            let config = try DistillConfig.load(path: path)
            if case .embedded = config.broker.brokers { _ = try TopicCatalog.load(path: config.broker.topicsFile) }
            let windows = config.statistics.windows.map(\.name).joined(separator: ", ")
            return .success("\(path): ok (revision \(config.revision), \(config.model.classes.count) classes, "
                            + "windows: \(windows))")
        } catch {
            return .failure(error)
        }
    }
}
