import DistillCore
import Foundation
import Numerics
import Testing

// MARK: - Baselines, groups and verdicts

@Suite("Trigger baselines and groups")
struct TriggerBaselineTests {
    @Test("baselines from a reference window use its point figures")
    func fromReference() throws {
        var rng = SeededRandom(seed: 21)
        let key = DistillGroupKey(newTeacher: "t-new", oldTeacher: "t-old", student: "s1", pairedTeacher: "t-old")
        var stats = DistillPaneStats(classes: 4, replicates: 16)
        let model = StreamModel()
        for i in 0..<4000 {
            let s = model.sample(id: i, ts: Int64(i), rng: &rng)
            stats.add(s, key: key, weights: BootstrapWeights(replicates: 16, id: s.id))
        }
        let f = stats.figures().flaggingRareClasses([3])
        #expect(f.perClass.map(\.isRare) == [false, false, false, true])
        let b = TriggerBaselines.fromReference(f, rareClasses: [3])
        #expect(b.qualityGap == f.qualityGap!.value)
        #expect(b.rareClassAccuracy[3] == f.perClass[3].studentAccuracy!.value)
        // The simulated student is ~0.887 accurate on the rare class.
        #expect(abs(b.rareClassAccuracy[3]! - 0.887) < 0.05)
    }

    @Test("standard group fan-out: pooled, per student, per slice, per student and slice")
    func standardGroups() {
        let g = DistillGroupKey.standardGroups(newTeacher: "n", oldTeacher: "o", pairedTeacher: "o", student: "s",
                                               slice: "canary")
        #expect(g.count == 4)
        #expect(Set(g.map(\.description)) == ["n|o|*|o|*", "n|o|s|o|*", "n|o|*|o|canary", "n|o|s|o|canary"])
        #expect(DistillGroupKey.standardGroups(newTeacher: "n", oldTeacher: nil, pairedTeacher: nil, student: nil,
                                               slice: nil).count == 1)
    }

    @Test("verdict precedence: major version > teacher regressed > redistill > none")
    func verdictPrecedence() {
        func d(_ kind: TriggerDecision.Kind, _ action: TriggerAction, episode: String? = nil) -> TriggerDecision {
            TriggerDecision(kind: kind, rule: "r", metric: .teacherKL, action: action, subject: "s", group: nil,
                            classIndex: nil, window: "w", windowStart: 0, windowEnd: 1, samples: 1, minSamples: 1,
                            value: 0, lower: 0, upper: 0, threshold: 0, comparison: .atLeast, mode: .point,
                            baseline: nil, episodeID: episode, episodeStart: nil, reason: "")
        }
        #expect(TriggerVerdict.combine([d(.skip, .redistill)]) == TriggerVerdict.none)
        #expect(TriggerVerdict.combine([d(.fire, .redistill)]) == .redistill)
        #expect(TriggerVerdict.combine([d(.fire, .redistill), d(.hold, .skipAndAlertTeacherOwners, episode: "e")])
            == .skipAndAlertTeacherOwners)
        #expect(TriggerVerdict.combine([d(.fire, .redistill), d(.hold, .skipAndAlertTeacherOwners)]) == .redistill)
        #expect(TriggerVerdict.combine([d(.fire, .skipAndAlertTeacherOwners), d(.fire, .redistillNow)])
            == .redistillNow)
    }
}
