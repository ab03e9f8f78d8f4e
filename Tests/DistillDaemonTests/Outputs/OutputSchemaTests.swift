import DistillCore
import DistillDaemon
import Foundation
import KafkaClient
import Testing

// MARK: - Helpers

/// The JSON object of encoded bytes.
func outputsObject(_ bytes: [UInt8]) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
}

/// Encoded bytes with one top-level key removed (a deliberately broken record).
func outputsRemoving(_ key: String, from bytes: [UInt8]) throws -> [UInt8] {
    var object = try outputsObject(bytes)
    object.removeValue(forKey: key)
    return Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
}

/// Runs the validator and checks each verdict against `expected` (name → should be valid).
func expectSchemaVerdicts(_ cases: [OutputsSchemaValidator.Case], expected: [String: Bool],
                          sourceLocation: SourceLocation = #_sourceLocation) throws {
    guard let verdicts = try OutputsSchemaValidator.validate(cases) else {
        // python3 or jsonschema is missing: the validator printed why; report the test as cancelled (skipped).
        try Test.cancel("schema validation needs python3 with the jsonschema package", sourceLocation: sourceLocation)
    }
    #expect(verdicts.count == cases.count, sourceLocation: sourceLocation)
    for v in verdicts {
        guard let want = expected[v.name] else {
            Issue.record("no expectation for \(v.name)", sourceLocation: sourceLocation)
            continue
        }
        #expect(v.valid == want, "\(v.name): expected \(want ? "valid" : "invalid"), got \(v.error ?? "valid")",
                sourceLocation: sourceLocation)
    }
}

// MARK: - Alerts

@Suite("Output records: alerts (CloudEvents)")
struct AlertEventTests {
    let context = OutputsFixture.context

    func alerts() throws -> [(TriggerDecision, AlertEvent)] {
        let out = try #require(OutputsFixture.shared)
        return out.decisions.compactMap { d in AlertEvent(decision: d, context: context).map { (d, $0) } }
    }

    @Test("the synthetic stream fires and resolves the expected episodes, with a teacher-regressed alert")
    func episodes() throws {
        let pairs = try alerts()
        let types = Set(pairs.map(\.1.type))
        #expect(types == Set(AlertEventType.allCases), "types: \(types)")
        let fired = Set(pairs.filter { $0.0.kind == .fire }.map(\.0.rule))
        #expect(fired == ["teacher_kl_drift", "student_agreement", "rare_class_drift", "teacher_regressed",
                          "teacher_major_version"])
        let resolved = Set(pairs.filter { $0.0.kind == .resolve }.map(\.0.rule))
        #expect(resolved.isSuperset(of: ["teacher_kl_drift", "student_agreement", "teacher_regressed"]))
        #expect(pairs.allSatisfy { ($0.1.type == .teacherRegressed) == ($0.0.kind == .fire
            && $0.0.action == .skipAndAlertTeacherOwners) })
        // skip and hold decisions are audit records, not alerts.
        let out = try #require(OutputsFixture.shared)
        #expect(out.decisions.filter { $0.kind == .skip || $0.kind == .hold }
            .allSatisfy { AlertEvent(decision: $0, context: context) == nil })
    }

    @Test("fields: CloudEvents attributes, subject = trigger, time = event time, key = trigger + group, data")
    func fields() throws {
        for (d, e) in try alerts() {
            #expect(e.specversion == "1.0")
            #expect(e.source == "distilld/test")
            #expect(e.subject == d.rule)
            #expect(e.datacontenttype == "application/json")
            #expect(e.time == DistillOutputTime.rfc3339(milliseconds: d.windowEnd))
            #expect(e.key == d.rule + "|" + (d.group?.description ?? d.subject))
            #expect(e.id == AlertEvent.id(type: e.type, trigger: d.rule, subject: d.subject,
                                          episodeStart: try #require(d.episodeStart), window: d.window))
            #expect(e.id.count == 64 && e.id.allSatisfy { "0123456789abcdef".contains($0) })
            let data = e.data
            #expect(data.trigger == d.rule && data.kind == d.kind.rawValue && data.action == d.action)
            #expect(data.value == d.value && data.interval.lower == d.lower && data.interval.upper == d.upper)
            #expect(data.interval.level == 0.95)
            #expect(data.threshold == d.threshold && data.window.samples == d.samples)
            #expect(data.window.name == d.window && data.window.start == d.windowStart)
            #expect(data.window.end == d.windowEnd)
            #expect(data.configRevision == "rev-test-1")
            #expect(data.episode.id == d.episodeID && data.episode.start == d.episodeStart)
            if let g = d.group {
                #expect(data.oldTeacherVersion == "t-old" && data.newTeacherVersion == "t-new")
                #expect(data.studentVersion == g.student)
                #expect(data.group?.key == g.description)
            } else {
                #expect(d.rule == "teacher_major_version")
                #expect(data.newTeacherVersion == "t-next" && data.oldTeacherVersion == nil)
                let majorAt = OutputsFixture.origin + OutputsFixture().majorVersionAt
                #expect(e.time == DistillOutputTime.rfc3339(milliseconds: majorAt))
            }
            let record = try e.producerRecord()
            #expect(record.topic == "distill.alerts")
            #expect(record.key == Array(e.key.utf8))
            #expect(record.timestamp == d.windowEnd)
            #expect(record.headers == [KafkaHeader("content-type", "application/cloudevents+json; charset=utf-8")])
            #expect(record.value == (try e.jsonBytes()))
        }
    }

    @Test("a per-class fire carries its class; fired and resolved of one episode share key, differ in id")
    func episodeIdentity() throws {
        let pairs = try alerts()
        let rare = try #require(pairs.first { $0.0.rule == "rare_class_drift" && $0.0.kind == .fire })
        #expect(rare.1.data.classIndex == 3 && rare.1.data.subject.hasSuffix("#class=3"))
        for (d, fired) in pairs where d.kind == .fire {
            guard let resolved = pairs.first(where: {
                $0.0.kind == .resolve && $0.0.rule == d.rule && $0.0.subject == d.subject
                    && $0.0.episodeStart == d.episodeStart
            }) else { continue }
            #expect(resolved.1.key == fired.key)
            #expect(resolved.1.id != fired.id)
            #expect(resolved.1.data.episode.id == fired.data.episode.id)
            #expect(resolved.1.time > fired.time)
        }
    }

    @Test("ids and bytes are identical across two runs; a different episode start gives a different id")
    func deterministic() throws {
        let first = try OutputsFixture().run()
        let second = try OutputsFixture().run()
        let a = try AlertEvent.events(from: first.decisions, context: context).map { try $0.jsonBytes() }
        let b = try AlertEvent.events(from: second.decisions, context: context).map { try $0.jsonBytes() }
        #expect(!a.isEmpty && a == b)
        // Shifting the change by one slide moves every later episode start, and so every window-driven id
        // (episodes that started before the change are, rightly, the same in both runs).
        let shifted = try OutputsFixture(changeAt: 50 * OutputsFixture.minute).run()
        let firstChange = OutputsFixture.origin + 40 * OutputsFixture.minute
        func ids(_ o: OutputsFixture.Output) -> Set<String> {
            Set(AlertEvent.events(from: o.decisions, context: context)
                .filter { $0.data.group != nil && $0.data.episode.start > firstChange }.map(\.id))
        }
        #expect(!ids(first).isEmpty && !ids(shifted).isEmpty && ids(first).isDisjoint(with: ids(shifted)))
        let d = try #require(first.decisions.first { $0.kind == .fire && $0.group != nil })
        var later = d
        later.episodeStart = d.episodeStart! + 1
        #expect(AlertEvent(decision: d, context: context)!.id != AlertEvent(decision: later, context: context)!.id)
        // The id pins the hash: trigger, group, episode start, window (and type), netstring-framed SHA-256.
        #expect(AlertEvent.id(type: .triggerFired, trigger: "r", subject: "g", episodeStart: 5, window: "w")
            == DistillOutputSHA256.hex(Array("21:distill.trigger.fired,1:r,1:g,1:5,1:w,".utf8)))
    }

    @Test("JSON is sorted and finite: NaN and infinities become null")
    func nonFinite() throws {
        let out = try #require(OutputsFixture.shared)
        var d = try #require(out.decisions.first { $0.kind == .fire && $0.group != nil })
        d.value = .nan
        d.lower = -.infinity
        d.upper = .infinity
        d.baseline = .nan
        let e = try #require(AlertEvent(decision: d, context: context))
        let bytes = try e.jsonBytes()
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.hasPrefix("{\"data\":{\"action\":"))
        #expect(!text.contains("nan") && !text.contains("inf"))
        let data = try #require(try outputsObject(bytes)["data"] as? [String: Any])
        #expect(data["value"] is NSNull && data["baseline"] is NSNull)
        let interval = try #require(data["interval"] as? [String: Any])
        #expect(interval["lower"] is NSNull && interval["upper"] is NSNull)
        // Round trip.
        #expect(try JSONDecoder().decode(AlertEvent.self, from: Data(bytes)) == e)
        try expectSchemaVerdicts([OutputsSchemaValidator.Case(name: "nan", schema: "alert.schema.json", json: bytes)],
                                 expected: ["nan": true])
    }

    @Test("a teacher regression reported by the registry (no group, no window) is a valid teacher-regressed alert")
    func registryRegression() throws {
        // The shape DistillEngine gives a registry-driven regression.
        let d = TriggerDecision(
            kind: .fire, rule: "teacher_regressed", metric: .teacherRegression, action: .skipAndAlertTeacherOwners,
            subject: "t-v9", group: nil, classIndex: nil, window: "registry", windowStart: 1_767_225_600_000,
            windowEnd: 1_767_225_600_000, samples: 0, minSamples: 0, value: nil, lower: nil, upper: nil,
            threshold: 0.005, comparison: .atLeast, mode: .point, baseline: nil,
            episodeID: "teacher_regressed|t-v9|1767225600000", episodeStart: 1_767_225_600_000,
            reason: "teacher t-v9 regressed: recorded accuracy below the active teacher")
        let e = try #require(AlertEvent(decision: d, context: context, oldTeacher: "t-v8"))
        #expect(e.type == .teacherRegressed && e.key == "teacher_regressed|t-v9")
        #expect(e.data.newTeacherVersion == "t-v9" && e.data.oldTeacherVersion == "t-v8")
        #expect(e.time == "2026-01-01T00:00:00.000Z")
        #expect(AlertEvent.id(for: d) == e.id)
        try expectSchemaVerdicts([.init(name: "registry", schema: "alert.schema.json", json: try e.jsonBytes())],
                                 expected: ["registry": true])
    }

    @Test("every alert validates against alert.schema.json; one without id, or with an extra field, does not")
    func schema() throws {
        let events = try alerts().map(\.1)
        var cases: [OutputsSchemaValidator.Case] = []
        var expected: [String: Bool] = [:]
        for (i, e) in events.enumerated() {
            let name = "alert-\(i)-\(e.type.rawValue)"
            cases.append(.init(name: name, schema: "alert.schema.json", json: try e.jsonBytes()))
            expected[name] = true
        }
        let good = try #require(events.first).jsonBytes()
        cases.append(.init(name: "missing-id", schema: "alert.schema.json",
                           json: try outputsRemoving("id", from: good)))
        expected["missing-id"] = false
        var extra = try outputsObject(good)
        extra["unexpected"] = 1
        cases.append(.init(name: "extra-field", schema: "alert.schema.json",
                           json: Array(try JSONSerialization.data(withJSONObject: extra))))
        expected["extra-field"] = false
        var badType = try outputsObject(good)
        badType["type"] = "distill.something.else"
        cases.append(.init(name: "bad-type", schema: "alert.schema.json",
                           json: Array(try JSONSerialization.data(withJSONObject: badType))))
        expected["bad-type"] = false
        try expectSchemaVerdicts(cases, expected: expected)
    }
}

// MARK: - Window snapshots and calibration checks

@Suite("Output records: window snapshots and calibration checks")
struct WindowAndCalibrationRecordTests {
    let context = OutputsFixture.context

    @Test("a snapshot per closed window and group, with every figure and interval of DistillCore")
    func snapshotFields() throws {
        let out = try #require(OutputsFixture.shared)
        #expect(out.windows.count >= 10)
        for w in out.windows {
            let snaps = WindowSnapshot.snapshots(of: w, context: context, rareClasses: [3])
            #expect(snaps.count == w.groups.count)
            #expect(snaps.map(\.group.key) == snaps.map(\.group.key).sorted())
            for s in snaps {
                let key = try #require(w.groups.keys.first { $0.description == s.group.key })
                let f = w.groups[key]!.figures(level: 0.95)
                #expect(s.key == "drift|" + key.description)
                #expect(s.time == DistillOutputTime.rfc3339(milliseconds: w.end))
                #expect(s.window.start == w.start && s.window.end == w.end && s.window.samples == w.samples)
                #expect(s.figures.teacherKL?.value == f.teacherKL?.value)
                #expect(s.figures.teacherKL?.lower == f.teacherKL?.lower)
                #expect(s.figures.studentAgreement?.upper == f.studentAgreement?.upper)
                #expect(s.figures.qualityGap?.value == f.qualityGap?.value)
                #expect(s.samples.kl == f.klSamples && s.samples.studentLabeled == f.studentLabeledSamples)
                #expect(s.perClass.count == 4 && s.perClass[3].isRare && !s.perClass[0].isRare)
                #expect(s.configRevision == "rev-test-1")
                let record = try s.producerRecord()
                #expect(record.topic == "distill.windows" && record.timestamp == w.end)
                #expect(record.key == Array(s.key.utf8))
            }
        }
    }

    @Test("snapshots of the evaluator's reports carry the verdict and the same figures")
    func reportSnapshots() throws {
        let out = try #require(OutputsFixture.shared)
        let snaps = WindowSnapshot.snapshots(reports: out.reports, context: context)
        #expect(snaps.count == out.reports.count)
        #expect(Set(snaps.compactMap(\.verdict)) == [.none, .skipAndAlertTeacherOwners])
        for (s, r) in zip(snaps, out.reports) {
            let w = try #require(out.windows.first { $0.name == r.window && $0.end == r.end })
            var plain = WindowSnapshot(window: w, group: r.group, figures: w.groups[r.group]!.figures(level: 0.95),
                                       context: context, rareClasses: [3])
            #expect(plain.verdict == nil)
            plain.verdict = r.verdict
            #expect(s == plain)
        }
    }

    @Test("calibration checks become records keyed by model version, with every figure")
    func checkFields() throws {
        let out = try #require(OutputsFixture.shared)
        #expect(Set(out.checks.map(\.version)) == ["t-old", "t-new", "s1"])
        #expect(out.checks.contains { $0.status == .drift })
        for c in out.checks {
            let r = CalibrationCheckRecord(c, context: context)
            #expect(r.key == c.version && r.role == c.role.rawValue && r.status == c.status.rawValue)
            #expect(r.time == DistillOutputTime.rfc3339(milliseconds: c.windowEnd))
            #expect(r.ece?.value == c.ece?.value && r.ece?.lower == c.ece?.lower)
            #expect(r.fittedTemperature == c.fittedTemperature && r.deployedTemperature == 1.0)
            #expect(r.bins.count == c.bins.count && r.reasons == c.reasons)
            #expect(r.baselineECE == (c.version == "t-new" ? 0.01 : nil))
            let record = try r.producerRecord()
            #expect(record.topic == "distill.calibration" && record.timestamp == c.windowEnd)
        }
    }

    @Test("snapshots and checks are byte-identical across runs")
    func deterministic() throws {
        let a = try OutputsFixture().run()
        let b = try OutputsFixture().run()
        func bytes(_ o: OutputsFixture.Output) throws -> [[UInt8]] {
            try o.windows.flatMap { WindowSnapshot.snapshots(of: $0, context: context) }.map { try $0.jsonBytes() }
                + o.checks.map { try CalibrationCheckRecord($0, context: context).jsonBytes() }
        }
        #expect(try bytes(a) == bytes(b))
    }

    @Test("every snapshot and check validates against its schema; broken ones do not")
    func schema() throws {
        let out = try #require(OutputsFixture.shared)
        var cases: [OutputsSchemaValidator.Case] = []
        var expected: [String: Bool] = [:]
        let snaps = WindowSnapshot.snapshots(reports: out.reports, context: context)
        for (i, s) in snaps.enumerated() {
            cases.append(.init(name: "snapshot-\(i)", schema: "window-snapshot.schema.json", json: try s.jsonBytes()))
            expected["snapshot-\(i)"] = true
        }
        let records = CalibrationCheckRecord.records(from: out.checks, context: context)
        for (i, r) in records.enumerated() {
            cases.append(.init(name: "check-\(i)", schema: "calibration-check.schema.json", json: try r.jsonBytes()))
            expected["check-\(i)"] = true
        }
        let snap = try #require(snaps.first).jsonBytes()
        let check = try #require(records.first).jsonBytes()
        cases.append(.init(name: "snapshot-missing-id", schema: "window-snapshot.schema.json",
                           json: try outputsRemoving("id", from: snap)))
        cases.append(.init(name: "check-missing-id", schema: "calibration-check.schema.json",
                           json: try outputsRemoving("id", from: check)))
        var badStatus = try outputsObject(check)
        badStatus["status"] = "fine"
        cases.append(.init(name: "check-bad-status", schema: "calibration-check.schema.json",
                           json: Array(try JSONSerialization.data(withJSONObject: badStatus))))
        expected["snapshot-missing-id"] = false
        expected["check-missing-id"] = false
        expected["check-bad-status"] = false
        try expectSchemaVerdicts(cases, expected: expected)
    }

    @Test("an empty group's undefined figures are written as null and still validate")
    func emptyFigures() throws {
        // A window whose only sample has no old teacher and no label: KL, deltas and accuracies are undefined.
        var set = DistillWindowSet(config: DistillStatisticsConfig(
            classes: 4, replicates: 8, windows: [.eventTime("fast", size: 60_000, slide: 60_000)],
            calibrationWindows: []))
        let s = DistillSample(id: "x", timestamp: 1_000, classes: 4, teacherVersions: ["t-new"],
                              teacherLogits: [1, 0, 0, 0], studentVersion: "s1", studentLogits: [0, 1, 0, 0])
        set.ingest(s, groups: [DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old")])
        set.advanceWatermark(to: 120_000)
        let w = try #require(set.closeReady().statistics.first)
        let snap = try #require(WindowSnapshot.snapshots(of: w, context: context).first)
        #expect(snap.figures.teacherKL == nil && snap.figures.studentAccuracy == nil)
        #expect(snap.figures.studentAgreement?.value == 0)
        let object = try outputsObject(try snap.jsonBytes())
        let figures = try #require(object["figures"] as? [String: Any])
        #expect(figures.count == 11 && figures["teacher_kl"] is NSNull)
        try expectSchemaVerdicts([.init(name: "empty", schema: "window-snapshot.schema.json",
                                        json: try snap.jsonBytes())], expected: ["empty": true])
    }
}
