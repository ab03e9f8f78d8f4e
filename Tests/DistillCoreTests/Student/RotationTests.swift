import Foundation
import Numerics
import Testing

@testable import DistillCore

// MARK: - Teacher rotation, ensemble smoothness, auxiliary head vs biased teacher

private func record(_ v: String, createdAt: Int64, major: Int = 1, accuracy: Double = 0.93, ece: Double = 0.02)
    -> TeacherRecord
{
    TeacherRecord(
        version: v, major: major, createdAtMilliseconds: createdAt, accuracy: accuracy, ece: ece, status: .active)
}

@Suite("Teacher rotation")
struct RotationTests {
    /// Teacher A (seed 1) for 6 000 samples, then the registry activates an unrelated teacher B (seed 5); samples
    /// carry both teachers' logits. Under `latest` the student switches to B.
    ///
    /// Measured: the EMA's trailing-500 agreement with B reaches 0.95 2 497 samples after the switch (asserted
    /// ≤ 4 000); the first 500 post-switch samples agree 0.54. The EMA decay ramp restarts on the teacher change
    /// (``MeanTeacherConfiguration/restartRampOnTeacherChange``); without it the EMA does not reach 0.95 within
    /// 8 000 samples (0.86 at the end). Under `lts:A` agreement with B ends at 0.40 (asserted < 0.6).
    @Test("agreement with a new teacher recovers to 0.95 within 4 000 samples under latest")
    func recoveryAfterRotation() throws {
        let a = SyntheticTeacher(seed: 1, d: StudentStreams.d, c: StudentStreams.c, hidden: 4)
        let b = SyntheticTeacher(seed: 5, d: StudentStreams.d, c: StudentStreams.c, hidden: 4)
        func run(_ strategy: TeacherStrategy) throws -> (recovery: Int?, firstWindow: Double, last: Double) {
            var registry = TeacherRegistry()
            _ = registry.apply(record("A", createdAt: 1))
            let distiller = try OnlineDistiller(StudentStreams.distillerConfiguration(learningRate: 0.03, batch: 4))
            var rng = StudentRandom(seed: 2)
            var agreesWithB: [Bool] = []
            let switchAt = 6_000
            for n in 0..<(switchAt + 8_000) {
                if n == switchAt {
                    let events = registry.apply(record("B", createdAt: 2))
                    #expect(events.contains(.newActive(version: "B", previous: "A")))
                }
                let x = StudentStreams.features(&rng, StudentStreams.d)
                let entries =
                    [TeacherLogits(version: "A", logits: a.logits(x))]
                    + (n >= switchAt ? [TeacherLogits(version: "B", logits: b.logits(x))] : [])
                let selection = registry.select(strategy, available: entries.map(\.version))
                let o = distiller.learn(features: x, teachers: selection.indices.map { entries[$0] }, label: nil)
                if n >= switchAt { agreesWithB.append(o.emaPrediction == argmax(b.logits(x))) }
            }
            #expect(distiller.teacherVersionsUsed == (strategy == .latest ? ["A", "B"] : ["A"]))
            #expect(distiller.teacherChanges == (strategy == .latest ? 1 : 0))
            let recovery = StudentStreams.firstReaching(agreesWithB, window: 500, threshold: 0.95)
            let first = Double(agreesWithB[0..<500].filter { $0 }.count) / 500
            let last = Double(agreesWithB.suffix(1_000).filter { $0 }.count) / 1_000
            return (recovery, first, last)
        }
        let latest = try run(.latest)
        print("latest: recovery \(latest.recovery as Any) samples, first window \(latest.firstWindow)")
        print("latest: agreement with B over the last 1 000 samples \(latest.last)")
        let recovery = try #require(latest.recovery)
        #expect(recovery <= 4_000)
        #expect(latest.firstWindow < 0.7)
        let pinned = try run(.lts(version: "A"))
        print("lts:A agreement with B at the end: \(pinned.last)")
        #expect(pinned.last < 0.6)
    }

    /// Six successive teachers, each a perturbation (0.6) of one base; for each of the 5 rotations, the mean
    /// KL(target before ‖ target after) over 400 probe samples at T = 2. `ensemble:3` changes one member in three,
    /// so its targets move less. Measured: latest 0.51 vs ensemble 0.062 nats; asserted ensemble < 0.5 × latest.
    @Test("ensemble:3 gives smoother successive targets than latest")
    func ensembleSmoothness() throws {
        let base = SyntheticTeacher(seed: 1, d: StudentStreams.d, c: StudentStreams.c, hidden: 8)
        let teachers = (0..<6).map { base.perturbed(seed: 40 + UInt64($0), amount: 0.6) }
        let names = (0..<6).map { "v\($0)" }
        var rng = StudentRandom(seed: 8)
        let probe = (0..<400).map { _ in StudentStreams.features(&rng, StudentStreams.d) }
        let t: Float = 2
        func meanSuccessiveKL(_ strategy: TeacherStrategy) -> Double {
            var registry = TeacherRegistry()
            var previous: [[Float]]?
            var total = 0.0
            var count = 0
            for k in 0..<6 {
                _ = registry.apply(record(names[k], createdAt: Int64(k + 1)))
                let targets: [[Float]] = probe.map { (x: [Float]) -> [Float] in
                    let entries = (0...k).map { TeacherLogits(version: names[$0], logits: teachers[$0].logits(x)) }
                    let sel = registry.select(strategy, available: entries.map(\.version))
                    var target = [Float](repeating: 0, count: StudentStreams.c)
                    var scratch = target
                    let ok = target.withUnsafeMutableBufferPointer { tb in
                        scratch.withUnsafeMutableBufferPointer { sb in
                            OnlineDistiller.softTarget(
                                teachers: sel.indices.map { entries[$0] }, temperature: t, into: tb, scratch: sb)
                        }
                    }
                    precondition(ok)
                    return target
                }
                if let previous {
                    for (p, q) in zip(previous, targets) {
                        total += klDivergence(p.map { logf($0) }, q.map { logf($0) })
                        count += 1
                    }
                }
                previous = targets
            }
            return total / Double(count)
        }
        let latest = meanSuccessiveKL(.latest)
        let ensemble = meanSuccessiveKL(.ensemble(count: 3))
        print("mean successive-target KL: latest \(latest), ensemble:3 \(ensemble)")
        #expect(latest > 0.01)
        #expect(ensemble < 0.5 * latest)
    }
}

@Suite("Auxiliary distillation head")
struct AuxiliaryHeadTests {
    /// A biased teacher: the true function's logits plus +2.5 on class 0; every sample carries the true label.
    /// Three students (MLP 8-32-4, same seed): hard labels only (Hinton α = 0), Hinton α = 0.9, and auxiliary.
    /// On 2 000 probe samples: the share predicted as class 0 by each served (EMA) head versus the truth.
    ///
    /// Measured: truth 0.040, biased teacher 0.425, hard-only 0.035, hinton 0.357, auxiliary 0.035; auxiliary
    /// agrees with hard-only on 98 %. Asserted: |aux − hard| < 0.04, hinton − truth > 0.15, agreement ≥ 0.9.
    @Test("auxiliary served head matches a hard-label model on a biased-teacher stream; Hinton copies the bias")
    func biasDoesNotLeak() throws {
        let truth = SyntheticTeacher(seed: 1, d: StudentStreams.d, c: StudentStreams.c, hidden: 4)
        var biased = truth
        biased.logitBias = [2.5, 0, 0, 0]
        func train(_ loss: KDLoss) throws -> OnlineDistiller {
            let d = try OnlineDistiller(StudentStreams.distillerConfiguration(loss: loss, learningRate: 0.03, batch: 4))
            var rng = StudentRandom(seed: 2)
            for _ in 0..<12_000 {
                let x = StudentStreams.features(&rng, StudentStreams.d)
                d.learn(
                    features: x, teachers: [TeacherLogits(version: "biased", logits: biased.logits(x))],
                    label: argmax(truth.logits(x)))
            }
            return d
        }
        let hard = try train(.hinton(alpha: 0))
        let hinton = try train(.hinton(alpha: 0.9))
        let aux = try train(.auxiliary())
        var rng = StudentRandom(seed: 77)
        let probe = (0..<2_000).map { _ in StudentStreams.features(&rng, StudentStreams.d) }
        func share(_ f: ([Float]) -> Int) -> Double { Double(probe.filter { f($0) == 0 }.count) / Double(probe.count) }
        let truthShare = share { argmax(truth.logits($0)) }
        let teacherShare = share { argmax(biased.logits($0)) }
        let hardShare = share { argmax(hard.scoreEMA(features: $0)) }
        let hintonShare = share { argmax(hinton.scoreEMA(features: $0)) }
        let auxShare = share { argmax(aux.scoreEMA(features: $0)) }
        var agreed = 0
        for x in probe where argmax(aux.scoreEMA(features: x)) == argmax(hard.scoreEMA(features: x)) { agreed += 1 }
        let agreement = Double(agreed) / Double(probe.count)
        print(
            "class-0 share: truth \(truthShare) teacher \(teacherShare) hard \(hardShare) hinton \(hintonShare) "
                + "aux \(auxShare); aux~hard agreement \(agreement)")
        #expect(abs(auxShare - hardShare) < 0.04)
        #expect(hintonShare - truthShare > 0.15)
        #expect(agreement >= 0.9)
    }
}

@Suite("Non-finite inputs")
struct NonFiniteTests {
    @Test("non-finite or overflowing inputs never reach the weights")
    func nonFiniteNeverReachesWeights() throws {
        var config = StudentStreams.distillerConfiguration(batch: 2)
        config.model.hiddenLayers = [8]
        let d = try OnlineDistiller(config)
        let teacher = SyntheticTeacher(seed: 1, d: StudentStreams.d, c: StudentStreams.c, hidden: 4)
        var rng = StudentRandom(seed: 3)
        let good = StudentStreams.features(&rng, StudentStreams.d)
        let entry = TeacherLogits(version: "t", logits: teacher.logits(good))
        let before = d.model.parameterArray
        let emaBefore = d.emaParameterArray

        var nanX = good
        nanX[3] = .nan
        #expect(d.learn(features: nanX, teachers: [entry], label: nil).disposition == .rejectedFeatures)
        var infX = good
        infX[0] = -.infinity
        #expect(d.learn(features: infX, teachers: [entry], label: 1).disposition == .rejectedFeatures)
        #expect(
            d.learn(features: Array(good.prefix(3)), teachers: [entry], label: nil).disposition == .rejectedFeatures)
        var badTeacher = entry
        badTeacher.logits[2] = .nan
        #expect(d.learn(features: good, teachers: [badTeacher], label: nil).disposition == .rejectedTeacher)
        #expect(d.learn(features: good, teachers: [entry], label: 9).disposition == .rejectedLabel)
        #expect(d.samplesRejected == 5)

        // Finite but huge features overflow the forward pass: the batch is skipped and counted.
        let huge = good.map { $0 < 0 ? -0.9 * Float.greatestFiniteMagnitude : 0.9 * Float.greatestFiniteMagnitude }
        #expect(d.learn(features: huge, teachers: [entry], label: 0).disposition == .accepted)
        let o = d.learn(features: good, teachers: [entry], label: 0)
        #expect(o.batch == .skippedNonFinite)
        #expect(d.batchesSkipped == 1)
        #expect(d.model.parameterArray == before)
        #expect(d.emaParameterArray == emaBefore)
        #expect(d.model.gradients.allSatisfy { $0 == 0 })

        // A clean batch afterwards still learns normally.
        d.learn(features: good, teachers: [entry], label: 0)
        let applied = d.learn(features: good, teachers: [entry], label: 0)
        guard case .applied(let loss) = applied.batch else {
            Issue.record("expected an applied batch, got \(applied.batch)")
            return
        }
        #expect(loss.isFinite)
        #expect(d.model.parameterArray != before)
        #expect(d.model.parameterArray.allSatisfy { $0.isFinite })
    }
}
