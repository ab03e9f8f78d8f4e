import DistillCore
import Foundation
import Testing

// MARK: - Trigger matrix scenarios

/// Runs a synthetic stream through a `DistillWindowSet` and a `TriggerEvaluator`.
struct Scenario {
    static let minute: Int64 = 60_000
    static let key = DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old", student: "s1", pairedTeacher: "t-old")

    /// All default rules, bound to one 20 min / 10 min window named `drift` (the default `fast` binding of
    /// `student_agreement` is moved there too, to keep the test fast).
    static func matrix() -> TriggerMatrixConfig {
        let rules = TriggerMatrixConfig.defaultRules.map { r -> TriggerRule in
            var r = r
            if r.metric != .teacherMajorVersion { r.window = "drift" }
            return r
        }
        return TriggerMatrixConfig(rules: rules, rareClasses: [3],
                                   baselines: TriggerBaselines(qualityGap: 0.016, rareClassAccuracy: [3: 0.887]))
    }

    var before = StreamModel()
    var after = StreamModel()
    var changeAt: Int64 = 60 * minute
    var revertAt: Int64?
    var duration: Int64 = 180 * minute
    var samplesPerSecond = 5
    var seed: UInt64 = 1

    func run() throws -> (decisions: [TriggerDecision], verdicts: [(Int64, TriggerVerdict)]) {
        let config = DistillStatisticsConfig(classes: 4, windows: [
            .eventTime("drift", size: 20 * Self.minute, slide: 10 * Self.minute, grace: 0),
        ], calibrationWindows: [])
        try config.validate()
        let matrix = Self.matrix()
        try matrix.validate(windows: ["drift"], classes: 4)
        var set = DistillWindowSet(config: config)
        var evaluator = TriggerEvaluator(config: matrix)
        var rng = SeededRandom(seed: seed)
        var weights = BootstrapWeights(replicates: config.replicates)
        var decisions: [TriggerDecision] = []
        var verdicts: [(Int64, TriggerVerdict)] = []
        let step = Int64(1000 / samplesPerSecond)
        var id = 0
        var ts: Int64 = 0
        while ts < duration {
            let changed = ts >= changeAt && ts < (revertAt ?? .max)
            let s = (changed ? after : before).sample(id: id, ts: ts, rng: &rng)
            weights.reset(idHash: StableHash.id(s.id))
            set.ingest(s, groups: [Self.key], weights: weights)
            for w in set.closeReady().statistics {
                for report in evaluator.report(window: w) {
                    decisions += report.decisions
                    verdicts.append((w.end, report.verdict))
                    #expect(report.figures.perClass[3].isRare)
                }
            }
            id += 1
            ts += step
        }
        return (decisions, verdicts)
    }
}

@Suite("Trigger scenarios")
struct TriggerScenarioTests {
    func fires(_ d: [TriggerDecision], _ rule: String) -> [TriggerDecision] {
        d.filter { $0.rule == rule && $0.kind == .fire }
    }

    @Test("a stable stream never fires, and every evaluation leaves an audit record")
    func stableNeverFires() throws {
        let (d, verdicts) = try Scenario(duration: 120 * Scenario.minute).run()
        let fired = d.filter { $0.kind != .skip }
        #expect(fired.isEmpty, "unexpected: \(fired.map { "\($0.rule) \($0.value ?? .nan) \($0.reason)" })")
        // 11 windows × (6 figure rules + 1 rare class) decisions, all with evidence.
        #expect(d.count == verdicts.count * 7)
        #expect(d.allSatisfy { $0.value != nil && $0.lower! <= $0.value! && $0.value! <= $0.upper! && $0.samples > 0 })
        #expect(verdicts.allSatisfy { $0.1 == TriggerVerdict.none })
        // Audit records are plain JSON (no NaN/inf) and round-trip.
        let json = try JSONEncoder().encode(d)
        #expect(try JSONDecoder().decode([TriggerDecision].self, from: json) == d)
    }

    @Test("noise below the interval (teacher +0.2 pp) never fires")
    func smallLiftNeverFires() throws {
        var s = Scenario(duration: 120 * Scenario.minute)
        s.after.newAccuracy = 0.902
        let (d, _) = try s.run()
        #expect(d.filter { $0.kind == .fire }.isEmpty)
        // The point estimate did move around the true +0.2 pp; the interval kept it from firing.
        let deltas = d.filter {
            $0.rule == "teacher_accuracy_delta" && $0.windowEnd > s.changeAt + 20 * Scenario.minute
        }
        #expect(deltas.allSatisfy { $0.lower! < 0.005 })
    }

    @Test("teacher accuracy +3 pp fires teacher_accuracy_delta once, only after the change; verdict redistill")
    func accuracyDelta() throws {
        var s = Scenario()
        s.after.newAccuracy = 0.93
        let (d, verdicts) = try s.run()
        let f = fires(d, "teacher_accuracy_delta")
        #expect(f.count == 1)
        #expect(f.allSatisfy { $0.windowEnd > s.changeAt && $0.lower! >= 0.005 && $0.episodeID != nil })
        #expect(fires(d, "teacher_regressed").isEmpty)
        #expect(verdicts.contains { $0.1 == .redistill && $0.0 > s.changeAt })
        #expect(verdicts.allSatisfy { $0.0 <= s.changeAt ? $0.1 == TriggerVerdict.none : true })
        // Later windows hold the episode instead of re-firing.
        #expect(d.contains { $0.rule == "teacher_accuracy_delta" && $0.kind == .hold })
    }

    @Test("teacher over-confidence fires teacher_ece_delta but not teacher_regressed")
    func eceDelta() throws {
        var s = Scenario()
        s.after.newExtraMargin = 0.3
        let (d, _) = try s.run()
        let f = fires(d, "teacher_ece_delta")
        #expect(f.count == 1 && f.allSatisfy { $0.windowEnd > s.changeAt })
        #expect(fires(d, "teacher_regressed").isEmpty)
        #expect(fires(d, "teacher_accuracy_delta").isEmpty)
    }

    @Test("teacher logit shift fires teacher_kl_drift after the change")
    func klDrift() throws {
        var s = Scenario()
        s.after.newTeacherShift = 1.0
        let (d, _) = try s.run()
        let f = fires(d, "teacher_kl_drift")
        #expect(f.count == 1 && f.allSatisfy { $0.windowEnd > s.changeAt && $0.lower! >= 0.05 })
        let before = d.filter { $0.rule == "teacher_kl_drift" && $0.windowEnd <= s.changeAt }
        #expect(!before.isEmpty && before.allSatisfy { $0.kind == .skip && $0.value! < 0.01 })
    }

    @Test("student agreement drop fires once, holds, and resolves after the revert (hysteresis)")
    func agreementEpisode() throws {
        var s = Scenario(revertAt: 110 * Scenario.minute)
        s.after.agreement = 0.92
        let (d, _) = try s.run()
        let rule = d.filter { $0.rule == "student_agreement" }
        let f = rule.filter { $0.kind == .fire }
        let r = rule.filter { $0.kind == .resolve }
        #expect(f.count == 1 && r.count == 1)
        guard let fire = f.first, let resolve = r.first else { return }
        #expect(fire.windowEnd > s.changeAt && fire.upper! < 0.95)
        #expect(resolve.windowEnd > s.revertAt! && resolve.value! >= 0.955)
        #expect(resolve.episodeID == fire.episodeID)
        #expect(fire.episodeID == "student_agreement|\(Scenario.key)|\(fire.windowEnd)")
        #expect(rule.filter { $0.windowEnd > fire.windowEnd && $0.windowEnd < resolve.windowEnd }
            .allSatisfy { $0.kind == .hold })
    }

    @Test("student falling behind fires quality_gap_drift without student_agreement")
    func qualityGap() throws {
        var s = Scenario()
        s.after.studentExtraError = 0.02
        let (d, _) = try s.run()
        let f = fires(d, "quality_gap_drift")
        #expect(f.count == 1 && f.allSatisfy { $0.windowEnd > s.changeAt && $0.baseline == 0.016 })
        #expect(fires(d, "student_agreement").isEmpty)
    }

    @Test("rare-class student accuracy drop fires rare_class_drift for that class only")
    func rareClass() throws {
        var s = Scenario()
        s.after.rareClassExtraError = 0.2
        let (d, _) = try s.run()
        let f = fires(d, "rare_class_drift")
        #expect(f.count == 1 && f.allSatisfy { $0.windowEnd > s.changeAt && $0.classIndex == 3 })
        #expect(f.first?.subject.hasSuffix("#class=3") == true)
    }

    @Test("a regressed teacher fires teacher_regressed and the verdict skips re-distillation")
    func regressed() throws {
        var s = Scenario()
        s.after.newAccuracy = 0.86
        let (d, verdicts) = try s.run()
        let f = fires(d, "teacher_regressed")
        #expect(f.count == 1 && f.allSatisfy { $0.windowEnd > s.changeAt && $0.action == .skipAndAlertTeacherOwners })
        #expect(verdicts.contains { $0.1 == .skipAndAlertTeacherOwners })
        #expect(!verdicts.contains { $0.1 == .redistill })
    }
}

@Suite("Trigger evaluator")
struct TriggerEvaluatorTests {
    @Test("teacher major version fires at once, once per version")
    func majorVersion() {
        var e = TriggerEvaluator()
        let d1 = e.teacherVersionAppeared(TeacherVersionEvent(version: "distilbert-v9", major: 2, previousMajor: 1,
                                                              eventTime: 1000))
        #expect(d1.map(\.kind) == [.fire] && d1[0].action == .redistillNow)
        #expect(d1[0].episodeID == "teacher_major_version|teacher:distilbert-v9|1000")
        #expect(TriggerVerdict.combine(d1) == .redistillNow)
        let d2 = e.teacherVersionAppeared(TeacherVersionEvent(version: "distilbert-v9", major: 2, previousMajor: 1,
                                                              eventTime: 5000))
        #expect(d2.map(\.kind) == [.hold])
        let d3 = e.teacherVersionAppeared(TeacherVersionEvent(version: "distilbert-v8.1", major: 1, previousMajor: 1,
                                                              eventTime: 6000))
        #expect(d3.map(\.kind) == [.skip])
    }

    func figures(agreement: Double, lower: Double, upper: Double, samples: Double = 5000) -> DistillFigures {
        DistillFigures(klSamples: 0, agreementSamples: samples, teacherLabeledSamples: 0, studentLabeledSamples: 0,
                       teacherKL: nil, studentAgreement: BootstrapEstimate(value: agreement, lower: lower, upper: upper,
                                                                           replicates: 64),
                       newTeacherAccuracy: nil, oldTeacherAccuracy: nil, teacherAccuracyDelta: nil, newTeacherECE: nil,
                       oldTeacherECE: nil, teacherECEDelta: nil, studentAccuracy: nil, pairedTeacherAccuracy: nil,
                       qualityGap: nil, perClass: [])
    }

    @Test("significance, point mode, min_samples, cooldown and hysteresis")
    func machine() {
        let key = DistillGroupKey(newTeacher: "a")
        var rule = TriggerRule(name: "agree", metric: .studentAgreement, threshold: 0.95, comparison: .below,
                               minSamples: 1000, hysteresis: 0.005, cooldownMillis: 100, window: "w")
        var e = TriggerEvaluator(config: TriggerMatrixConfig(rules: [rule]))
        func kind(_ f: DistillFigures, _ end: Int64) -> TriggerDecision.Kind {
            e.evaluate(figures: f, group: key, window: "w", start: end - 10, end: end)[0].kind
        }
        // Point below threshold but interval straddles it: not significant.
        #expect(kind(figures(agreement: 0.948, lower: 0.944, upper: 0.952), 10) == .skip)
        // Too few samples.
        #expect(kind(figures(agreement: 0.90, lower: 0.89, upper: 0.91, samples: 999), 20) == .skip)
        #expect(kind(figures(agreement: 0.90, lower: 0.89, upper: 0.91), 30) == .fire)
        #expect(kind(figures(agreement: 0.952, lower: 0.95, upper: 0.954), 40) == .hold)   // inside, not by margin
        #expect(kind(figures(agreement: 0.956, lower: 0.95, upper: 0.96), 50) == .resolve)
        #expect(kind(figures(agreement: 0.90, lower: 0.89, upper: 0.91), 60) == .hold)     // cooldown until 130
        #expect(kind(figures(agreement: 0.90, lower: 0.89, upper: 0.91), 140) == .fire)
        // Point mode fires on the point value alone.
        rule.mode = .point
        rule.name = "agree-point"
        e = TriggerEvaluator(config: TriggerMatrixConfig(rules: [rule]))
        #expect(kind(figures(agreement: 0.948, lower: 0.944, upper: 0.952), 10) == .fire)
    }

    @Test("matrix validation rejects unknown windows and out-of-range rare classes")
    func validation() {
        #expect(throws: DistillConfigError.self) {
            try TriggerMatrixConfig().validate(windows: ["fast"], classes: 4)
        }
        #expect(throws: DistillConfigError.self) {
            try TriggerMatrixConfig(rareClasses: [7]).validate(windows: ["fast", "drift"], classes: 4)
        }
        #expect(throws: Never.self) {
            try TriggerMatrixConfig(rareClasses: [3]).validate(windows: ["fast", "drift"], classes: 4)
        }
    }
}
