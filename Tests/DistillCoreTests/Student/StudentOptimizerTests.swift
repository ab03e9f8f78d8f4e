import Foundation
import Numerics
import Testing

@testable import DistillCore

// MARK: - Optimizers, mean teacher, model construction, configuration

@Suite("Student optimizers and mean teacher")
struct StudentOptimizerTests {
    private func step(_ c: StudentOptimizerConfiguration, _ w: inout [Float], _ gs: [[Float]]) {
        let o = StudentOptimizer(c, parameterCount: w.count)
        for g in gs {
            w.withUnsafeMutableBufferPointer { wb in g.withUnsafeBufferPointer { o.step(parameters: wb, gradients: $0) }
            }
        }
    }

    @Test("SGD with momentum matches the hand-computed recurrence")
    func sgd() {
        var w: [Float] = [1, -2]
        step(.init(kind: .sgd, learningRate: 0.1, momentum: 0.9, weightDecay: 0.01), &w, [[0.5, 1], [0.5, 1]])
        // v1 = g + λw0; w1 = w0 − η v1; v2 = μ v1 + g + λw1; w2 = w1 − η v2 (in Double)
        var ref: [Double] = [1, -2]
        var v: [Double] = [0, 0]
        for g in [[0.5, 1.0], [0.5, 1.0]] {
            for i in 0..<2 {
                v[i] = 0.9 * v[i] + g[i] + 0.01 * ref[i]
                ref[i] -= 0.1 * v[i]
            }
        }
        for i in 0..<2 { #expect(Double(w[i]).isApproximatelyEqual(to: ref[i], relativeTolerance: 1e-5)) }
    }

    @Test("Adam matches the bias-corrected reference (first step moves every weight by ≈ η)")
    func adam() {
        var w: [Float] = [1, -2, 0.5]
        let gs: [[Float]] = [[0.5, -3, 1e-4], [0.2, -1, 2e-4], [-0.1, 0.5, 0]]
        step(.init(kind: .adam, learningRate: 0.01), &w, Array(gs.prefix(1)))
        #expect(Double(w[0]).isApproximatelyEqual(to: 0.99, relativeTolerance: 1e-5))
        #expect(Double(w[1]).isApproximatelyEqual(to: -1.99, relativeTolerance: 1e-5))
        var w3: [Float] = [1, -2, 0.5]
        step(.init(kind: .adam, learningRate: 0.01), &w3, gs)
        var ref: [Double] = [1, -2, 0.5]
        var m = [0.0, 0, 0]
        var v = [0.0, 0, 0]
        for (t, g) in gs.enumerated() {
            for i in 0..<3 {
                m[i] = 0.9 * m[i] + 0.1 * Double(g[i])
                v[i] = 0.999 * v[i] + 0.001 * Double(g[i]) * Double(g[i])
                let mh = m[i] / (1 - pow(0.9, Double(t + 1)))
                let vh = v[i] / (1 - pow(0.999, Double(t + 1)))
                ref[i] -= 0.01 * mh / (vh.squareRoot() + 1e-8)
            }
        }
        for i in 0..<3 { #expect(Double(w3[i]).isApproximatelyEqual(to: ref[i], absoluteTolerance: 1e-6)) }
    }

    @Test("EMA decay: warm start min(1 − 1/(s+1), ramp 0.99 → 0.999), and ramp restart")
    func emaDecay() {
        let c = MeanTeacherConfiguration()
        #expect(c.decay(afterStep: 1) == 0.5)
        #expect(c.decay(afterStep: 9) == 0.9)
        #expect(Double(c.decay(afterStep: 99)).isApproximatelyEqual(to: 0.99, relativeTolerance: 1e-6))
        #expect(Double(c.decay(afterStep: 500)).isApproximatelyEqual(to: 0.9945, relativeTolerance: 1e-6))
        #expect(Double(c.decay(afterStep: 5_000)).isApproximatelyEqual(to: 0.999, relativeTolerance: 1e-6))
        #expect(
            Double(c.decay(afterStep: 5_000, rampStart: 5_000)).isApproximatelyEqual(to: 0.99, relativeTolerance: 1e-6))
        var w = MeanTeacherConfiguration(consistencyWeight: 2, consistencyRampSteps: 100)
        #expect(Double(w.consistencyWeight(atStep: 0)).isApproximatelyEqual(to: 2 * exp(-5), relativeTolerance: 1e-5))
        #expect(
            Double(w.consistencyWeight(atStep: 50)).isApproximatelyEqual(to: 2 * exp(-1.25), relativeTolerance: 1e-5))
        #expect(w.consistencyWeight(atStep: 100) == 2)
        w.consistencyWeight = 0
        #expect(w.consistencyWeight(atStep: 100) == 0)
        let initial: [Float] = [0, 10]
        let ema = initial.withUnsafeBufferPointer { MeanTeacher(c, initial: $0) }
        let student: [Float] = [1, 0]
        student.withUnsafeBufferPointer { _ = ema.update(from: $0, step: 1) }
        #expect(Array(ema.parameters) == [0.5, 5])
    }

    @Test("gradient clipping bounds the applied step; the mean-teacher consistency path trains without issues")
    func clippingAndConsistency() throws {
        var config = StudentStreams.distillerConfiguration(
            loss: .dkd(), hidden: [8], learningRate: 0.01, batch: 4, consistency: 1)
        config.optimizer = StudentOptimizerConfiguration(kind: .sgd, learningRate: 0.1, clipNorm: 1e-3)
        let d = try OnlineDistiller(config)
        let teacher = SyntheticTeacher(seed: 2, d: StudentStreams.d, c: StudentStreams.c, hidden: 4)
        var rng = StudentRandom(seed: 1)
        var previous = d.model.parameterArray
        for _ in 0..<5 {
            for _ in 0..<4 {
                let x = StudentStreams.features(&rng, StudentStreams.d)
                d.learn(features: x, teachers: [TeacherLogits(version: "t", logits: teacher.logits(x))], label: 1)
            }
            let now = d.model.parameterArray
            // SGD momentum 0.9 accumulates: ‖Δθ‖ ≤ η·Σ μ^k·clip ≤ η·clip/(1 − μ).
            let delta = zip(now, previous).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
            #expect(delta <= 0.1 * 1e-3 / (1 - 0.9) * 1.001)
            previous = now
        }
        #expect(d.batchesClipped == 5)
        #expect(d.stepsApplied == 5)
    }
}

@Suite("Student model and configuration")
struct StudentModelTests {
    @Test("layout: PyTorch [out, in] weights, offsets contiguous; softmax regression has only a head")
    func layout() {
        let l = StudentModelLayout(
            StudentModelConfiguration(inputDimension: 64, classCount: 16, hiddenLayers: [64], auxiliaryHead: true))
        #expect(l.trunk.count == 1)
        #expect(l.trunk[0].weightOffset == 0 && l.trunk[0].biasOffset == 64 * 64)
        #expect(l.head.weightOffset == 64 * 64 + 64)
        #expect(l.auxiliaryHead?.weightOffset == 64 * 64 + 64 + 16 * 64 + 16)
        #expect(l.parameterCount == 64 * 64 + 64 + 2 * (16 * 64 + 16))
        let sr = StudentModelLayout(StudentModelConfiguration(inputDimension: 64, classCount: 16))
        #expect(sr.trunk.isEmpty && sr.auxiliaryHead == nil && sr.parameterCount == 64 * 16 + 16)
    }

    @Test("initialisation is deterministic in the seed")
    func deterministic() throws {
        let c = StudentModelConfiguration(inputDimension: 5, classCount: 3, hiddenLayers: [4], seed: 77)
        let a = try StudentModel(c)
        let b = try StudentModel(c)
        #expect(a.parameterArray == b.parameterArray)
        var c2 = c
        c2.seed = 78
        #expect(try StudentModel(c2).parameterArray != a.parameterArray)
        // Biases start at zero.
        #expect(
            a.parameterArray[a.layout.trunk[0].biasOffset..<(a.layout.trunk[0].biasOffset + 4)].allSatisfy { $0 == 0 })
    }

    @Test("the Float forward pass matches the Double reference")
    func forwardMatchesReference() throws {
        let m = try StudentModel(
            StudentModelConfiguration(inputDimension: 7, classCount: 4, hiddenLayers: [9, 5], auxiliaryHead: true))
        var rng = StudentRandom(seed: 3)
        for _ in 0..<10 {
            let x = StudentStreams.features(&rng, 7)
            x.withUnsafeBufferPointer { m.forward($0) }
            let (z, za) = StudentReference.forward(m.layout, m.parameterArray.map(Double.init), x.map(Double.init))
            for k in 0..<4 {
                #expect(Double(m.logits[k]).isApproximatelyEqual(to: z[k], absoluteTolerance: 1e-5))
                #expect(Double(m.auxiliaryLogits[k]).isApproximatelyEqual(to: za[k], absoluteTolerance: 1e-5))
            }
        }
    }

    @Test("invalid configurations are rejected with the field named")
    func validation() {
        func field(_ body: () throws -> Void) -> String? {
            do {
                try body()
                return nil
            } catch let e as StudentError {
                return e.field
            } catch {
                return "?"
            }
        }
        let model = StudentModelConfiguration(inputDimension: 4, classCount: 3)
        #expect(field { try StudentModelConfiguration(inputDimension: 4, classCount: 1).validate() } == "model.classes")
        #expect(
            field { try StudentModelConfiguration(inputDimension: 4, classCount: 3, hiddenLayers: [3, 0]).validate() }
                == "model.hidden_layers[1]")
        #expect(field { try KDLoss.hinton(alpha: 1.5).validate() } == "loss.alpha")
        #expect(field { try KDLoss.dkd(alpha: 1, beta: -.infinity).validate() } == "loss.beta")
        #expect(field { try StudentOptimizerConfiguration(learningRate: 0).validate() } == "optimizer.learning_rate")
        #expect(field { try StudentOptimizerConfiguration(momentum: 1).validate() } == "optimizer.momentum")
        #expect(field { try StudentOptimizerConfiguration(clipNorm: .nan).validate() } == "optimizer.clip_norm")
        #expect(field { try MeanTeacherConfiguration(finalDecay: 1).validate() } == "mean_teacher.final_decay")
        #expect(
            field { try OnlineDistillerConfiguration(model: model, temperature: 0).validate() } == "loss.temperature")
        #expect(
            field { try OnlineDistillerConfiguration(model: model, batchSize: 0).validate() } == "student.batch_size")
        #expect(field { try OnlineDistillerConfiguration(model: model).validate() } == nil)
        #expect(KDLoss.dkd() == .dkd(alpha: 1, beta: 8, labelWeight: 1))
    }

    @Test("prequential counters: agreement, recent window, accuracy, ECE and Wilson interval")
    func counters() {
        var c = PrequentialCounters(windowSize: 4)
        for a in [true, true, false, true, true, true] { c.add(agreesWithTeacher: a, correct: nil, confidence: 0.9) }
        #expect(c.agreement.isApproximatelyEqual(to: 5.0 / 6))
        #expect(c.recentAgreement == 0.75)  // last four: false, true, true, true
        c.add(agreesWithTeacher: nil, correct: true, confidence: 0.95)
        c.add(agreesWithTeacher: nil, correct: false, confidence: 0.95)
        #expect(c.accuracy == 0.5)
        #expect(c.expectedCalibrationError.isApproximatelyEqual(to: 0.45, absoluteTolerance: 1e-6))
        let w = PrequentialCounters.wilson(successes: 95, trials: 100, z: 1.96)
        #expect(w.lower.isApproximatelyEqual(to: 0.8882, absoluteTolerance: 1e-3))
        #expect(w.upper.isApproximatelyEqual(to: 0.9785, absoluteTolerance: 1e-3))
    }
}
