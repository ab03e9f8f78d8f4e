import DistillCore
import DistillDaemon
import Foundation

// MARK: - A synthetic stream run through DistillCore, for the output-record tests

/// SplitMix64: deterministic across runs and platforms.
struct OutputsRandom {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        return StableHash.mix(state)
    }

    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// True with probability p.
    mutating func bernoulli(_ p: Double) -> Bool { uniform() < p }

    /// Uniform integer in 0..<n.
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// Runs a synthetic stream through `DistillWindowSet`, `TriggerEvaluator` and `CalibrationCheck`.
///
/// Four classes, teachers `t-old` and `t-new`, student `s1` paired with `t-old`, slices `a`/`b`. Between
/// `changeAt` and `revertAt` the new teacher loses accuracy (0.90 → 0.70) and drifts away from the old one,
/// and the student's agreement with its paired teacher falls (0.99 → 0.85), more so on rare class 3:
/// `teacher_kl_drift`, `teacher_regressed` (a teacher-regressed alert), `student_agreement` and
/// `rare_class_drift` fire, and resolve after the revert. A teacher major version appears at `majorVersionAt`.
struct OutputsFixture: Sendable {
    static let minute: Int64 = 60_000
    /// The configuration revision stamped on every record.
    static let context = DistillOutputContext(source: DistillOutputContext.source(instance: "test"),
                                              configRevision: "rev-test-1")

    /// Event time of the first sample, ms (2026-01-01T00:00:00Z); the times below are relative to it.
    static let origin: Int64 = 1_767_225_600_000

    var changeAt: Int64 = 40 * minute
    var revertAt: Int64 = 70 * minute
    var duration: Int64 = 110 * minute
    var majorVersionAt: Int64 = 25 * minute
    /// Ms between samples.
    var step: Int64 = 1000
    var seed: UInt64 = 7

    /// What the run produced.
    struct Output: Sendable {
        var decisions: [TriggerDecision] = []
        var windows: [DistillWindow] = []
        /// The evaluator's reports of every closed window (their decisions are in `decisions` too).
        var reports: [WindowReport] = []
        var checks: [CalibrationCheck] = []
    }

    static func matrix() -> TriggerMatrixConfig {
        let rules = [
            TriggerRule(name: "teacher_kl_drift", metric: .teacherKL, threshold: 0.05, comparison: .atLeast,
                        minSamples: 200, hysteresis: 0.01, cooldownMillis: 0),
            TriggerRule(name: "student_agreement", metric: .studentAgreement, threshold: 0.95, comparison: .below,
                        minSamples: 200, hysteresis: 0.005, cooldownMillis: 0),
            TriggerRule(name: "rare_class_drift", metric: .rareClassAccuracyDrop, threshold: 0.02,
                        comparison: .atLeast, minSamples: 50, hysteresis: 0.01, cooldownMillis: 0),
            TriggerRule(name: "teacher_regressed", metric: .teacherRegression, threshold: 0.005, comparison: .atLeast,
                        secondaryThreshold: 0.03, action: .skipAndAlertTeacherOwners, minSamples: 200,
                        hysteresis: 0.0025, cooldownMillis: 0),
            TriggerRule(name: "teacher_major_version", metric: .teacherMajorVersion, threshold: 0,
                        comparison: .above, action: .redistillNow, mode: .point, minSamples: 1, cooldownMillis: 0),
        ]
        return TriggerMatrixConfig(rules: rules, rareClasses: [3],
                                   baselines: TriggerBaselines(qualityGap: 0.0, rareClassAccuracy: [3: 0.85]))
    }

    static func statisticsConfig() -> DistillStatisticsConfig {
        DistillStatisticsConfig(
            classes: 4, replicates: 32,
            windows: [.eventTime("drift", size: 20 * minute, slide: 10 * minute, grace: 0)],
            calibrationWindows: [.eventTime("calibration", size: 30 * minute, slide: 30 * minute, grace: 0)],
            calibrationSampleCapacity: 512)
    }

    static let calibrationConfig = CalibrationCheckConfig(minSamples: 100, baselineECE: ["t-new": 0.01])

    /// Logits with `margin` on `predicted` plus uniform noise in ±0.3.
    static func logits(_ predicted: Int, margin: Float, rng: inout OutputsRandom) -> [Float] {
        (0..<4).map { k in Float(rng.uniform() * 0.6 - 0.3) + (k == predicted ? margin : 0) }
    }

    func sample(index: Int, ts: Int64, rng: inout OutputsRandom) -> DistillSample {
        let changed = ts - Self.origin >= changeAt && ts - Self.origin < revertAt
        let y = rng.bernoulli(0.15) ? 3 : rng.int(3)
        func wrong(_ than: Int) -> Int { (than + 1 + rng.int(3)) % 4 }
        let oldPred = rng.bernoulli(0.9) ? y : wrong(y)
        let old = Self.logits(oldPred, margin: 3, rng: &rng)
        var new: [Float]
        if changed {
            let newPred = rng.bernoulli(0.7) ? y : wrong(y)
            new = Self.logits(newPred, margin: 4, rng: &rng)
        } else {
            new = old.map { $0 + Float(rng.uniform() * 0.1 - 0.05) }
        }
        var studentPred = rng.bernoulli(changed ? 0.85 : 0.99) ? oldPred : wrong(oldPred)
        if changed && y == 3 && studentPred == 3 && rng.bernoulli(0.3) { studentPred = 0 }
        let student = Self.logits(studentPred, margin: 2.5, rng: &rng)
        return DistillSample(id: "req-\(index)", timestamp: ts, classes: 4, teacherVersions: ["t-old", "t-new"],
                             teacherLogits: old + new, studentVersion: "s1", studentLogits: student, label: y,
                             slice: index % 2 == 0 ? "a" : "b")
    }

    func run() throws -> Output {
        let config = Self.statisticsConfig()
        try config.validate()
        let matrix = Self.matrix()
        try matrix.validate(windows: ["drift"], classes: 4)
        var set = DistillWindowSet(config: config)
        var evaluator = TriggerEvaluator(config: matrix, level: config.confidenceLevel)
        var rng = OutputsRandom(state: seed)
        var out = Output()
        func collect(_ e: WindowEmissions) {
            for w in e.statistics {
                out.windows.append(w)
                let reports = evaluator.report(window: w)
                out.reports += reports
                out.decisions += reports.flatMap(\.decisions)
            }
            for c in e.calibration {
                out.checks += CalibrationCheck.checks(window: c, config: Self.calibrationConfig,
                                                      level: config.confidenceLevel,
                                                      deployedTemperature: { _ in 1.0 })
            }
        }
        var ts = Self.origin
        var index = 0
        var majorSent = false
        while ts < Self.origin + duration {
            if !majorSent && ts >= Self.origin + majorVersionAt {
                majorSent = true
                out.decisions += evaluator.teacherVersionAppeared(
                    TeacherVersionEvent(version: "t-next", major: 2, previousMajor: 1, eventTime: ts))
            }
            let s = sample(index: index, ts: ts, rng: &rng)
            let groups = DistillGroupKey.standardGroups(newTeacher: "t-new", oldTeacher: "t-old",
                                                        pairedTeacher: "t-old", student: s.studentVersion,
                                                        slice: s.slice)
            set.ingest(s, groups: groups)
            collect(set.closeReady())
            index += 1
            ts += step
        }
        set.advanceWatermark(to: Self.origin + duration + 60 * Self.minute)
        collect(set.closeReady())
        return out
    }

    /// One run of the default fixture, shared by the tests of a process (nil if its configuration is invalid).
    static let shared: Output? = try? OutputsFixture().run()
}
