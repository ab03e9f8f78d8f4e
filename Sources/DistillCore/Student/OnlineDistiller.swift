import Foundation

// MARK: - Configuration

/// Everything the online student needs: model shape, loss, temperature, optimizer, batch size and mean teacher.
public struct OnlineDistillerConfiguration: Sendable, Equatable {
    /// Network shape and seed. `auxiliaryHead` is forced on for ``KDLoss/auxiliary(distillationWeight:)``.
    public var model: StudentModelConfiguration
    /// Distillation loss. Default ``KDLoss/hinton(alpha:)`` with α = 0.9.
    public var loss: KDLoss
    /// Distillation temperature T > 0 used for the teacher's soft labels and the student's KD term. Default 2.
    public var temperature: Float
    /// Optimizer. Default Adam, η = 0.003, clip norm 5.
    public var optimizer: StudentOptimizerConfiguration
    /// Samples per optimizer step (gradients are averaged over the batch). Default 16.
    public var batchSize: Int
    /// EMA and consistency settings.
    public var meanTeacher: MeanTeacherConfiguration
    /// Size of the recent-agreement window of the running prequential counters. Default 500.
    public var prequentialWindow: Int

    /// Creates a configuration (all but `model` defaulted as documented on the properties).
    public init(
        model: StudentModelConfiguration, loss: KDLoss = .hinton(), temperature: Float = 2,
        optimizer: StudentOptimizerConfiguration = .init(), batchSize: Int = 16,
        meanTeacher: MeanTeacherConfiguration = .init(), prequentialWindow: Int = 500
    ) {
        self.model = model
        self.loss = loss
        self.temperature = temperature
        self.optimizer = optimizer
        self.batchSize = batchSize
        self.meanTeacher = meanTeacher
        self.prequentialWindow = prequentialWindow
    }

    /// Validates every part; throws ``StudentError`` naming the field.
    public func validate() throws {
        try model.validate()
        try loss.validate()
        try optimizer.validate()
        try meanTeacher.validate()
        guard temperature.isFinite, temperature > 0 else {
            throw StudentError.config("loss.temperature", "must be finite and > 0 (got \(temperature))")
        }
        guard batchSize >= 1 else { throw StudentError.config("student.batch_size", "must be ≥ 1 (got \(batchSize))") }
        guard prequentialWindow >= 1 else {
            throw StudentError.config("student.prequential_window", "must be ≥ 1 (got \(prequentialWindow))")
        }
    }
}

// MARK: - Inputs and outcomes

/// One teacher's logits on a sample, as carried by the stream.
public struct TeacherLogits: Sendable, Equatable {
    /// Teacher version, e.g. `distilbert-v8`.
    public var version: String
    /// Raw logits (length C).
    public var logits: [Float]

    /// Creates an entry.
    public init(version: String, logits: [Float]) {
        self.version = version
        self.logits = logits
    }
}

/// What happened to one sample given to ``OnlineDistiller/learn(features:target:teacherVersions:label:)``.
public struct StudentStepOutcome: Sendable, Equatable {
    /// Whether the sample was used.
    public enum Disposition: String, Sendable, Equatable {
        /// Scored, then added to the current batch.
        case accepted
        /// Scored only: it had neither a teacher target nor a label.
        case scoredOnly
        /// Rejected before scoring: features of the wrong length or not finite.
        case rejectedFeatures
        /// Rejected before scoring: teacher logits/target of the wrong length or not finite.
        case rejectedTeacher
        /// Rejected before scoring: label outside 0..<C.
        case rejectedLabel
    }

    /// What happened to the batch when this sample completed it.
    public enum BatchResult: Sendable, Equatable {
        /// The batch is still filling.
        case pending
        /// An optimizer step was applied with this mean batch loss (nats).
        case applied(loss: Float)
        /// The batch loss or gradient was not finite; the step was skipped and the weights are unchanged.
        case skippedNonFinite
    }

    /// What happened to the sample.
    public var disposition: Disposition
    /// The EMA model's predicted class before learning (-1 when rejected).
    public var emaPrediction: Int
    /// The raw student's predicted class before learning (-1 when not run).
    public var studentPrediction: Int
    /// The teacher target's argmax (nil without a target).
    public var teacherPrediction: Int?
    /// The batch result.
    public var batch: BatchResult
}

// MARK: - Online distiller

/// The online student trainer: prequential scoring of the EMA model, mini-batch distillation, optimizer step with
/// clipping and non-finite guards, and the mean-teacher EMA update.
///
/// Per sample (``learn(features:target:teacherVersions:label:)``): reject non-finite inputs; score the EMA model
/// (test) and update ``emaPrequential``; run the student forward (its argmax feeds ``studentPrequential``), compute
/// the loss and accumulate gradients (train). Every ``OnlineDistillerConfiguration/batchSize`` samples the mean
/// gradient is checked (loss and global norm finite, else the batch is skipped and counted), clipped, applied,
/// and the EMA is updated. No allocation per sample after `init` (except the version bookkeeping when the
/// teacher set changes).
///
/// Not thread-safe and not `Sendable`: the daemon owns one instance and drives it from one task.
public final class OnlineDistiller {
    /// The validated configuration.
    public let configuration: OnlineDistillerConfiguration
    /// The raw student.
    public let model: StudentModel
    /// The EMA weights (the artifact that is evaluated and published).
    public let meanTeacher: MeanTeacher
    /// The optimizer.
    public let optimizer: StudentOptimizer

    /// Prequential counters of the EMA model.
    public private(set) var emaPrequential: PrequentialCounters
    /// Prequential counters of the raw student (for comparison: the EMA should be smoother).
    public private(set) var studentPrequential: PrequentialCounters
    /// Samples accepted for learning.
    public internal(set) var samplesSeen = 0
    /// Samples rejected for non-finite or malformed input.
    public internal(set) var samplesRejected = 0
    /// Optimizer steps applied.
    public internal(set) var stepsApplied = 0
    /// Batches skipped because their loss or gradient was not finite.
    public internal(set) var batchesSkipped = 0
    /// Batches whose gradient was clipped.
    public internal(set) var batchesClipped = 0
    /// Exponential moving average (weight 0.05) of the applied batches' mean loss (nats); nil before the first step.
    public internal(set) var runningLoss: Double?
    /// Times a new teacher version appeared after the first (each restarts the EMA decay ramp when configured).
    public internal(set) var teacherChanges = 0
    /// Teacher versions used since the last ``resetTeacherVersions()`` (in first-use order).
    public internal(set) var teacherVersionsUsed: [String] = []

    let c: Int
    let emaLogitsBuffer: UnsafeMutableBufferPointer<Float>
    let emaProbabilities: UnsafeMutableBufferPointer<Float>
    let targetBuffer: UnsafeMutableBufferPointer<Float>
    let servedGradient: UnsafeMutableBufferPointer<Float>
    let auxiliaryGradient: UnsafeMutableBufferPointer<Float>
    let scratch: UnsafeMutableBufferPointer<Float>
    let noisy: UnsafeMutableBufferPointer<Float>
    var batchCount = 0
    var batchLoss: Double = 0
    var lastVersions: [String] = []
    var seenVersions: Set<String> = []
    var hasDistilled = false
    var noise: StudentRandom

    /// Builds the student, its EMA copy and the optimizer. Throws ``StudentError`` for an invalid configuration.
    public init(_ configuration: OnlineDistillerConfiguration) throws {
        var configuration = configuration
        configuration.model.auxiliaryHead = configuration.loss.needsAuxiliaryHead
        try configuration.validate()
        self.configuration = configuration
        model = try StudentModel(configuration.model)
        meanTeacher = MeanTeacher(configuration.meanTeacher, initial: UnsafeBufferPointer(model.parameters))
        optimizer = StudentOptimizer(configuration.optimizer, parameterCount: model.parameterCount)
        emaPrequential = PrequentialCounters(windowSize: configuration.prequentialWindow)
        studentPrequential = PrequentialCounters(windowSize: configuration.prequentialWindow)
        c = configuration.model.classCount
        func buffer(_ n: Int) -> UnsafeMutableBufferPointer<Float> {
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
            b.initialize(repeating: 0)
            return b
        }
        emaLogitsBuffer = buffer(c)
        emaProbabilities = buffer(c)
        targetBuffer = buffer(c)
        servedGradient = buffer(c)
        auxiliaryGradient = buffer(c)
        scratch = buffer(c)
        noisy = buffer(configuration.model.inputDimension)
        noise = StudentRandom(seed: configuration.model.seed ^ 0x5DEE_CE66_D1CE_5EED)
    }

    deinit {
        for b in [emaLogitsBuffer, emaProbabilities, targetBuffer, servedGradient, auxiliaryGradient, scratch, noisy] {
            b.deallocate()
        }
    }

    // MARK: Scoring

    /// Scores the EMA model on `features` (length D) and writes its served-head logits into `logits` (length C).
    /// This is the prequential score the caller feeds into its windows. Does not learn.
    public func scoreEMA(features: UnsafeBufferPointer<Float>, into logits: UnsafeMutableBufferPointer<Float>) {
        precondition(logits.count == c, "logits buffer must have C elements")
        model.forward(features, parameters: UnsafeBufferPointer(meanTeacher.parameters))
        _ = logits.update(fromContentsOf: UnsafeBufferPointer(model.logits))
    }

    /// The EMA model's logits on `features` (cold-path convenience).
    public func scoreEMA(features: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: c)
        features.withUnsafeBufferPointer { f in out.withUnsafeMutableBufferPointer { scoreEMA(features: f, into: $0) } }
        return out
    }

    /// The raw student's logits on `features` (cold-path convenience, for comparisons and tests).
    public func scoreStudent(features: [Float]) -> [Float] {
        features.withUnsafeBufferPointer { model.forward($0) }
        return Array(model.logits)
    }

    /// The EMA logits computed by the last ``learn(features:target:teacherVersions:label:)`` (its prequential score).
    public var lastEMALogits: UnsafeBufferPointer<Float> { UnsafeBufferPointer(emaLogitsBuffer) }

    // MARK: Teacher targets

    /// Writes the mean of softmax(z_k / T) over `teachers` into `target` (the ensemble soft label; one teacher
    /// gives its own soft label). Returns false (and leaves `target` unspecified) when there is no teacher, a
    /// logits vector has the wrong length, or any logit is not finite.
    public static func softTarget(
        teachers: [TeacherLogits], temperature: Float, into target: UnsafeMutableBufferPointer<Float>,
        scratch: UnsafeMutableBufferPointer<Float>
    ) -> Bool {
        guard !teachers.isEmpty else { return false }
        let n = target.count
        target.update(repeating: 0)
        for t in teachers {
            guard t.logits.count == n else { return false }
            let ok = t.logits.withUnsafeBufferPointer { z -> Bool in
                for v in z where !v.isFinite { return false }
                let s = UnsafeMutableBufferPointer(rebasing: scratch[0..<n])
                softmax(z, temperature: temperature, into: s)
                for i in 0..<n { target[i] += s[i] }
                return true
            }
            guard ok else { return false }
        }
        let inv = 1 / Float(teachers.count)
        for i in 0..<n { target[i] *= inv }
        return true
    }

    // MARK: Learning

    /// Test-then-train on one sample whose teacher target is the mean soft label of `teachers` (the teachers the
    /// caller's strategy selected; empty for none). See ``learn(features:target:teacherVersions:label:)``.
    @discardableResult
    public func learn(features: [Float], teachers: [TeacherLogits], label: Int?) -> StudentStepOutcome {
        if let rejected = features.withUnsafeBufferPointer({ rejection(features: $0, label: label) }) {
            return rejected
        }
        var hasTarget = false
        if !teachers.isEmpty {
            hasTarget = Self.softTarget(
                teachers: teachers, temperature: configuration.temperature, into: targetBuffer, scratch: scratch)
            guard hasTarget else {
                samplesRejected += 1
                return StudentStepOutcome(
                    disposition: .rejectedTeacher, emaPrediction: -1, studentPrediction: -1, teacherPrediction: nil,
                    batch: .pending)
            }
        }
        noteVersions(teachers)
        return features.withUnsafeBufferPointer { f in
            learnPrepared(features: f, hasTarget: hasTarget, label: label)
        }
    }

    /// Test-then-train on one sample.
    ///
    /// - Parameters:
    ///   - features: the sample's features (length D).
    ///   - target: teacher soft labels at the configured temperature (length C, summing to 1), or nil.
    ///   - teacherVersions: the teacher versions behind `target` (recorded for the checkpoint metadata).
    ///   - label: hard label in 0..<C, or nil.
    @discardableResult
    public func learn(
        features: UnsafeBufferPointer<Float>, target: UnsafeBufferPointer<Float>?, teacherVersions: [String],
        label: Int?
    ) -> StudentStepOutcome {
        if let rejected = rejection(features: features, label: label) { return rejected }
        if let target {
            guard target.count == c, target.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                samplesRejected += 1
                return StudentStepOutcome(
                    disposition: .rejectedTeacher, emaPrediction: -1, studentPrediction: -1, teacherPrediction: nil,
                    batch: .pending)
            }
            _ = targetBuffer.update(fromContentsOf: target)
        }
        if teacherVersions != lastVersions { noteVersionNames(teacherVersions) }
        return learnPrepared(features: features, hasTarget: target != nil, label: label)
    }

    func noteVersions(_ teachers: [TeacherLogits]) {
        var same = teachers.count == lastVersions.count
        if same {
            for (i, t) in teachers.enumerated() where t.version != lastVersions[i] {
                same = false
                break
            }
        }
        if !same { noteVersionNames(teachers.map(\.version)) }
    }

    /// Records the versions behind the current target. A version never distilled from before (after the first)
    /// counts as a teacher change and restarts the EMA decay ramp when configured; returning to a known version
    /// (e.g. samples that lack the newest teacher's logits) does not.
    func noteVersionNames(_ versions: [String]) {
        var newcomer = false
        for v in versions where !seenVersions.contains(v) {
            newcomer = true
            seenVersions.insert(v)
        }
        if newcomer, hasDistilled, configuration.meanTeacher.restartRampOnTeacherChange {
            meanTeacher.restartRamp(atStep: stepsApplied)
            teacherChanges += 1
        }
        if !versions.isEmpty { hasDistilled = true }
        lastVersions = versions
        for v in versions where !teacherVersionsUsed.contains(v) { teacherVersionsUsed.append(v) }
    }

    /// Forgets the teacher versions used (called after a checkpoint is written).
    public func resetTeacherVersions() {
        teacherVersionsUsed = lastVersions
    }

    /// Rejects (and counts) features of the wrong length or not finite, and labels outside 0..<C.
    func rejection(features: UnsafeBufferPointer<Float>, label: Int?) -> StudentStepOutcome? {
        var disposition: StudentStepOutcome.Disposition?
        if features.count != configuration.model.inputDimension || !features.allSatisfy({ $0.isFinite }) {
            disposition = .rejectedFeatures
        } else if let label, !(0..<c).contains(label) {
            disposition = .rejectedLabel
        }
        guard let disposition else { return nil }
        samplesRejected += 1
        return StudentStepOutcome(
            disposition: disposition, emaPrediction: -1, studentPrediction: -1, teacherPrediction: nil,
            batch: .pending)
    }

    /// Test-then-train on validated inputs (the target, if any, is in `targetBuffer`).
    func learnPrepared(features: UnsafeBufferPointer<Float>, hasTarget: Bool, label: Int?) -> StudentStepOutcome {
        let target = UnsafeBufferPointer(targetBuffer)
        let teacherClass = hasTarget ? argmax(target) : nil

        // Test: the EMA model first.
        scoreEMA(features: features, into: emaLogitsBuffer)
        softmax(UnsafeBufferPointer(emaLogitsBuffer), into: emaProbabilities)
        let emaClass = argmax(UnsafeBufferPointer(emaLogitsBuffer))
        emaPrequential.add(
            agreesWithTeacher: teacherClass.map { $0 == emaClass }, correct: label.map { $0 == emaClass },
            confidence: emaProbabilities[emaClass])

        // Train: the raw student (its pre-update prediction is its own prequential score).
        model.forward(features)
        let studentClass = argmax(UnsafeBufferPointer(model.logits))
        softmax(UnsafeBufferPointer(model.logits), into: scratch)
        studentPrequential.add(
            agreesWithTeacher: teacherClass.map { $0 == studentClass }, correct: label.map { $0 == studentClass },
            confidence: scratch[studentClass])
        guard hasTarget || label != nil else {
            return StudentStepOutcome(
                disposition: .scoredOnly, emaPrediction: emaClass, studentPrediction: studentClass,
                teacherPrediction: teacherClass, batch: .pending)
        }
        let hasAux = model.layout.auxiliaryHead != nil
        var loss = configuration.loss.evaluate(
            served: UnsafeBufferPointer(model.logits),
            auxiliary: hasAux ? UnsafeBufferPointer(model.auxiliaryLogits) : nil,
            target: hasTarget ? target : nil, label: label, temperature: configuration.temperature,
            servedGradient: servedGradient, auxiliaryGradient: hasAux ? auxiliaryGradient : nil, scratch: scratch)
        model.backward(
            servedGradient: UnsafeBufferPointer(servedGradient),
            auxiliaryGradient: hasAux ? UnsafeBufferPointer(auxiliaryGradient) : nil)

        // Mean-teacher consistency on noised features.
        let weight = configuration.meanTeacher.consistencyWeight(atStep: stepsApplied)
        if weight > 0 {
            let sigma = Double(configuration.meanTeacher.noiseStandardDeviation)
            for i in 0..<features.count { noisy[i] = features[i] + Float(noise.nextGaussian() * sigma) }
            model.forward(UnsafeBufferPointer(noisy))
            servedGradient.update(repeating: 0)
            loss += ConsistencyLoss.evaluate(
                logits: UnsafeBufferPointer(model.logits), target: UnsafeBufferPointer(emaProbabilities),
                weight: weight, gradient: servedGradient, scratch: scratch)
            model.backward(servedGradient: UnsafeBufferPointer(servedGradient), auxiliaryGradient: nil)
        }

        samplesSeen += 1
        batchLoss += Double(loss)
        batchCount += 1
        let result: StudentStepOutcome.BatchResult = batchCount >= configuration.batchSize ? applyBatch() : .pending
        return StudentStepOutcome(
            disposition: .accepted, emaPrediction: emaClass, studentPrediction: studentClass,
            teacherPrediction: teacherClass, batch: result)
    }

    /// Applies the partial batch now (e.g. before a checkpoint). Returns nil when the batch is empty.
    @discardableResult
    public func flush() -> StudentStepOutcome.BatchResult? {
        batchCount == 0 ? nil : applyBatch()
    }

    func applyBatch() -> StudentStepOutcome.BatchResult {
        defer {
            batchCount = 0
            batchLoss = 0
            model.zeroGradients()
        }
        let meanLoss = batchLoss / Double(batchCount)
        let scale = 1 / Float(batchCount)
        let g = model.gradients
        for i in 0..<g.count { g[i] *= scale }
        let norm = StudentOptimizer.globalNorm(UnsafeBufferPointer(g))
        guard meanLoss.isFinite, norm.isFinite else {
            batchesSkipped += 1
            return .skippedNonFinite
        }
        if let clip = configuration.optimizer.clipNorm, norm > Double(clip) {
            let k = Float(Double(clip) / norm)
            for i in 0..<g.count { g[i] *= k }
            batchesClipped += 1
        }
        optimizer.step(parameters: model.parameters, gradients: UnsafeBufferPointer(g))
        stepsApplied += 1
        meanTeacher.update(from: UnsafeBufferPointer(model.parameters), step: stepsApplied)
        runningLoss = runningLoss.map { 0.95 * $0 + 0.05 * meanLoss } ?? meanLoss
        return .applied(loss: Float(meanLoss))
    }

    // MARK: Restore

    /// Loads weights into both the student and the EMA (rollback or restart), clears the optimizer state and the
    /// pending batch. Counters are kept.
    public func restore(parameters: [Float]) {
        precondition(parameters.count == model.parameterCount, "parameter count mismatch")
        model.parameterArray = parameters
        parameters.withUnsafeBufferPointer { meanTeacher.reset(to: $0) }
        optimizer.reset()
        model.zeroGradients()
        batchCount = 0
        batchLoss = 0
    }

    /// A copy of the EMA parameters.
    public var emaParameterArray: [Float] { Array(meanTeacher.parameters) }

    /// Takes weights averaged over several instances (model averaging): the student and the EMA get them and the
    /// pending batch is dropped; the optimizer's state and the counters are kept, so training goes on from there.
    public func adopt(trained: [Float], ema: [Float]) {
        precondition(trained.count == model.parameterCount && ema.count == model.parameterCount,
                     "parameter count mismatch")
        model.parameterArray = trained
        ema.withUnsafeBufferPointer { meanTeacher.reset(to: $0) }
        model.zeroGradients()
        batchCount = 0
        batchLoss = 0
    }
}
