import Foundation
import Numerics
import Testing

@testable import DistillCore

// MARK: - Learning on synthetic streams

/// Result of running a student over a synthetic stream.
struct StudentStreamRun {
    /// EMA argmax == teacher argmax, per sample (prequential, before learning).
    var emaAgrees: [Bool] = []
    /// Raw student argmax == teacher argmax, per sample (prequential).
    var rawAgrees: [Bool] = []
    /// First sample count at which the EMA's trailing-`window` agreement reached the threshold.
    var samplesToThreshold: Int?
}

enum StudentStreams {
    /// First n ≥ window such that the mean of flags[n-window..<n] ≥ threshold.
    static func firstReaching(_ flags: [Bool], from start: Int = 0, window: Int, threshold: Double) -> Int? {
        guard flags.count - start >= window else { return nil }
        var sum = flags[start..<(start + window)].filter { $0 }.count
        var n = start + window
        while true {
            if Double(sum) / Double(window) >= threshold { return n }
            guard n < flags.count else { return nil }
            sum += (flags[n] ? 1 : 0) - (flags[n - window] ? 1 : 0)
            n += 1
        }
    }

    static let d = 8
    static let c = 4

    static func distillerConfiguration(
        loss: KDLoss = .hinton(alpha: 0.9), hidden: [Int] = [32], learningRate: Float = 0.005, batch: Int = 8,
        seed: UInt64 = 3, consistency: Float = 0
    ) -> OnlineDistillerConfiguration {
        OnlineDistillerConfiguration(
            model: StudentModelConfiguration(inputDimension: d, classCount: c, hiddenLayers: hidden, seed: seed),
            loss: loss, temperature: 2,
            optimizer: StudentOptimizerConfiguration(kind: .adam, learningRate: learningRate),
            batchSize: batch,
            meanTeacher: MeanTeacherConfiguration(consistencyWeight: consistency),
            prequentialWindow: 500)
    }

    /// Teacher-only stream from a fixed nonlinear teacher.
    static func run(
        _ distiller: OnlineDistiller, teacher: SyntheticTeacher, samples: Int, seed: UInt64
    ) -> StudentStreamRun {
        var rng = StudentRandom(seed: seed)
        var run = StudentStreamRun()
        for _ in 0..<samples {
            let x = StudentStreams.features(&rng, d)
            let z = teacher.logits(x)
            let o = distiller.learn(features: x, teachers: [TeacherLogits(version: "t", logits: z)], label: nil)
            let tc = argmax(z)
            run.emaAgrees.append(o.emaPrediction == tc)
            run.rawAgrees.append(o.studentPrediction == tc)
        }
        run.samplesToThreshold = StudentStreams.firstReaching(run.emaAgrees, window: 500, threshold: 0.95)
        return run
    }
}

@Suite("Online learning")
struct OnlineLearningTests {
    /// Learning and smoothness on a fixed nonlinear teacher (4 tanh units, D = 8, C = 4), student MLP 8-32-4,
    /// Hinton α = 0.9, T = 2, Adam η = 0.03, batch 4, EMA decay 0.99 → 0.999.
    ///
    /// Measured (seeded, deterministic): the EMA's trailing-500 prequential agreement first reaches 0.95 after
    /// 2 418 samples; asserted ≤ 4 000. Over samples 5 000–20 000, windows of 250: EMA variance 1.8e-4 vs raw
    /// 5.4e-4 (mean agreement 0.964 vs 0.939); asserted EMA < 0.75 × raw and EMA mean ≥ raw mean.
    @Test("EMA student reaches 0.95 prequential agreement within 4 000 samples, smoother than the raw student")
    func learnsNonlinearTeacher() throws {
        let teacher = SyntheticTeacher(seed: 1, d: StudentStreams.d, c: StudentStreams.c, hidden: 4)
        let distiller = try OnlineDistiller(StudentStreams.distillerConfiguration(learningRate: 0.03, batch: 4))
        let run = StudentStreams.run(distiller, teacher: teacher, samples: 20_000, seed: 2)
        let reached = try #require(run.samplesToThreshold)
        print("samples to 0.95 EMA prequential agreement: \(reached)")
        #expect(reached <= 4_000)
        let ema = StudentStreams.windowMeans(Array(run.emaAgrees[5_000...]), window: 250)
        let raw = StudentStreams.windowMeans(Array(run.rawAgrees[5_000...]), window: 250)
        let emaMean = ema.reduce(0, +) / Double(ema.count)
        let rawMean = raw.reduce(0, +) / Double(raw.count)
        let emaVariance = StudentStreams.variance(ema)
        let rawVariance = StudentStreams.variance(raw)
        print("windowed agreement variance: EMA \(emaVariance) raw \(rawVariance); means \(emaMean) \(rawMean)")
        #expect(emaVariance < 0.75 * rawVariance)
        #expect(emaMean >= rawMean)
        #expect(distiller.emaPrequential.recentAgreement >= 0.95)
        let evidence = distiller.emaPrequential.gateEvidence()
        let interval = "[\(evidence.agreementLower), \(evidence.agreementUpper)]"
        print("gate evidence (Wilson, last 500): \(evidence.agreement) \(interval)")
        let decision = StudentCheckpointPolicy().decide(samplesSinceLastCheckpoint: 20_000, evidence: evidence)
        #expect((decision == .write) == (evidence.agreementLower >= 0.95))
        #expect(distiller.batchesSkipped == 0)
        #expect(distiller.samplesSeen == 20_000)
    }

    /// Variants on the same stream (MLP 8-32-4, batch 4, 6 000 samples): measured samples to 0.95 trailing-500 EMA
    /// agreement: Hinton/Adam 2 418, DKD/Adam 2 944, Hinton/Adam + consistency (w = 1, σ = 0.1) 3 554,
    /// Hinton/SGD (η = 0.05, μ = 0.9) 3 350. Asserted ≤ 5 000 each.
    @Test("every loss and optimizer reaches 0.95 agreement within 5 000 samples", arguments: [0, 1, 2, 3])
    func variantsLearn(variant: Int) throws {
        let teacher = SyntheticTeacher(seed: 1, d: StudentStreams.d, c: StudentStreams.c, hidden: 4)
        var config = StudentStreams.distillerConfiguration(learningRate: 0.03, batch: 4)
        switch variant {
        case 1: config.loss = .dkd()
        case 2: config.meanTeacher.consistencyWeight = 1
        case 3: config.optimizer = StudentOptimizerConfiguration(kind: .sgd, learningRate: 0.05)
        default: break
        }
        let run = StudentStreams.run(try OnlineDistiller(config), teacher: teacher, samples: 6_000, seed: 2)
        let reached = try #require(run.samplesToThreshold)
        print("variant \(variant): samples to 0.95 = \(reached)")
        #expect(reached <= 5_000)
    }
}
