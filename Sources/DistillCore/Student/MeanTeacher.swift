import Foundation

// MARK: - Mean teacher configuration

/// The EMA ("mean teacher") copy of the student and the optional consistency loss (Tarvainen & Valpola 2017,
/// "Mean teachers are better role models").
///
/// After optimizer step s (1-based), θ_ema ← d·θ_ema + (1 − d)·θ with
/// d = min(1 − 1/(s + 1), decay(s)), decay ramping linearly from ``initialDecay`` to ``finalDecay`` over
/// ``decayRampSteps`` steps (the warm start makes early EMA a plain running mean).
///
/// Consistency: on each sample, the student on noised features x + ε (ε ~ N(0, σ²)) is pulled towards the EMA
/// model on x by w(s)·MSE(softmax(z_student), softmax(z_ema)), with w(s) = ``consistencyWeight``·exp(−5(1 − t)²),
/// t = min(s / ``consistencyRampSteps``, 1). A weight of 0 (default) disables it.
public struct MeanTeacherConfiguration: Sendable, Equatable {
    /// EMA decay at the start of the ramp. Default 0.99.
    public var initialDecay: Float
    /// EMA decay after the ramp. Default 0.999.
    public var finalDecay: Float
    /// Optimizer steps over which the decay ramps. Default 1000.
    public var decayRampSteps: Int
    /// Maximum consistency weight; 0 disables the consistency loss. Default 0.
    public var consistencyWeight: Float
    /// Standard deviation σ of the Gaussian feature noise for the consistency loss. Default 0.1.
    public var noiseStandardDeviation: Float
    /// Optimizer steps over which the consistency weight ramps up. Default 500.
    public var consistencyRampSteps: Int
    /// When a teacher version not distilled from before appears, restart the decay ramp at ``initialDecay`` so
    /// the EMA follows the new teacher with a ~100-step horizon instead of ~1000. Default true.
    public var restartRampOnTeacherChange: Bool

    /// Creates a configuration (all arguments defaulted as documented on the properties).
    public init(
        initialDecay: Float = 0.99, finalDecay: Float = 0.999, decayRampSteps: Int = 1000,
        consistencyWeight: Float = 0, noiseStandardDeviation: Float = 0.1, consistencyRampSteps: Int = 500,
        restartRampOnTeacherChange: Bool = true
    ) {
        self.restartRampOnTeacherChange = restartRampOnTeacherChange
        self.initialDecay = initialDecay
        self.finalDecay = finalDecay
        self.decayRampSteps = decayRampSteps
        self.consistencyWeight = consistencyWeight
        self.noiseStandardDeviation = noiseStandardDeviation
        self.consistencyRampSteps = consistencyRampSteps
    }

    /// Checks ranges: decays in [0, 1), ramps ≥ 0, weight and σ finite and ≥ 0.
    public func validate() throws {
        for (n, v) in [("mean_teacher.initial_decay", initialDecay), ("mean_teacher.final_decay", finalDecay)]
        where !(v.isFinite && v >= 0 && v < 1) {
            throw StudentError.config(n, "must be in [0, 1) (got \(v))")
        }
        guard decayRampSteps >= 0 else { throw StudentError.config("mean_teacher.decay_ramp_steps", "must be ≥ 0") }
        guard consistencyRampSteps >= 0 else {
            throw StudentError.config("mean_teacher.consistency_ramp_steps", "must be ≥ 0")
        }
        for (n, v) in [
            ("mean_teacher.consistency_weight", consistencyWeight), ("mean_teacher.noise_std", noiseStandardDeviation),
        ] where !(v.isFinite && v >= 0) {
            throw StudentError.config(n, "must be finite and ≥ 0 (got \(v))")
        }
    }

    /// The EMA decay used after optimizer step `step` (1-based): min(1 − 1/(step + 1), ramped decay), where the
    /// ramp position counts steps since `rampStart` (0, or the step of the last ramp restart).
    public func decay(afterStep step: Int, rampStart: Int = 0) -> Float {
        let r = max(step - rampStart, 0)
        let t = decayRampSteps == 0 ? 1 : min(Float(r) / Float(decayRampSteps), 1)
        let ramped = initialDecay + (finalDecay - initialDecay) * t
        return min(1 - 1 / Float(step + 1), ramped)
    }

    /// The consistency weight at optimizer step `step`: weight·exp(−5(1 − t)²), t = min(step/ramp, 1).
    public func consistencyWeight(atStep step: Int) -> Float {
        guard consistencyWeight > 0 else { return 0 }
        let t = consistencyRampSteps == 0 ? 1 : min(Float(step) / Float(consistencyRampSteps), 1)
        return consistencyWeight * expf(-5 * (1 - t) * (1 - t))
    }
}

// MARK: - EMA weights

/// The exponential-moving-average copy of the student's parameters: the artifact that is evaluated and published.
public final class MeanTeacher {
    /// The configuration in use.
    public let configuration: MeanTeacherConfiguration
    /// The EMA parameters (same layout as the student's).
    public let parameters: UnsafeMutableBufferPointer<Float>
    /// Optimizer step at which the decay ramp last (re)started.
    public internal(set) var rampStart = 0

    /// Starts the EMA at a copy of `initial`.
    public init(_ configuration: MeanTeacherConfiguration, initial: UnsafeBufferPointer<Float>) {
        self.configuration = configuration
        parameters = .allocate(capacity: initial.count)
        _ = parameters.initialize(fromContentsOf: initial)
    }

    deinit { parameters.deallocate() }

    /// Restarts the decay ramp at optimizer step `step` (the EMA weights are kept).
    public func restartRamp(atStep step: Int) {
        rampStart = step
    }

    /// θ_ema ← d·θ_ema + (1 − d)·θ with d = ``MeanTeacherConfiguration/decay(afterStep:rampStart:)``. Returns d.
    @discardableResult
    public func update(from student: UnsafeBufferPointer<Float>, step: Int) -> Float {
        precondition(student.count == parameters.count, "EMA size")
        let d = configuration.decay(afterStep: step, rampStart: rampStart)
        let a = 1 - d
        let e = parameters.baseAddress!
        let s = student.baseAddress!
        for i in 0..<parameters.count { e[i] += a * (s[i] - e[i]) }
        return d
    }

    /// Overwrites the EMA with `values` (restore / rollback).
    public func reset(to values: UnsafeBufferPointer<Float>) {
        precondition(values.count == parameters.count, "EMA size")
        _ = parameters.update(fromContentsOf: values)
    }
}

// MARK: - Consistency loss

/// Mean-teacher consistency: MSE between class probabilities, L = (1/C)·Σ_i (p_i − q_i)²,
/// p = softmax(z) of the student (on noised features), q the EMA model's probabilities (a constant target).
public enum ConsistencyLoss {
    /// Returns w·L and *adds* w·∂L/∂z into `gradient`:
    /// ∂L/∂z_j = (2/C)·p_j·((p_j − q_j) − Σ_i (p_i − q_i)·p_i). `scratch` needs C floats.
    public static func evaluate(
        logits z: UnsafeBufferPointer<Float>, target q: UnsafeBufferPointer<Float>, weight: Float,
        gradient: UnsafeMutableBufferPointer<Float>, scratch: UnsafeMutableBufferPointer<Float>
    ) -> Float {
        let c = z.count
        softmax(z, into: UnsafeMutableBufferPointer(rebasing: scratch[0..<c]))
        var loss: Float = 0
        var dot: Float = 0
        for i in 0..<c {
            let d = scratch[i] - q[i]
            loss += d * d
            dot += d * scratch[i]
        }
        let k = 2 / Float(c)
        for j in 0..<c {
            let p = scratch[j]
            gradient[j] += weight * k * p * ((p - q[j]) - dot)
        }
        return weight * loss / Float(c)
    }
}
