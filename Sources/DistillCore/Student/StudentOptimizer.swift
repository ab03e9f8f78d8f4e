import Foundation

// MARK: - Optimizer configuration

/// Optimizer of the online student: SGD with momentum, or Adam; both with optional global-norm gradient clipping.
public struct StudentOptimizerConfiguration: Sendable, Equatable {
    /// The update rule.
    public enum Kind: String, Sendable, Equatable {
        /// v ← μ·v + g; θ ← θ − η·v.
        case sgd
        /// Adam (Kingma & Ba 2015) with bias correction.
        case adam
    }

    /// Update rule. Default `.adam`.
    public var kind: Kind
    /// Step size η. Default 0.003.
    public var learningRate: Float
    /// SGD momentum μ ∈ [0, 1). Default 0.9.
    public var momentum: Float
    /// Adam β₁ ∈ [0, 1). Default 0.9.
    public var beta1: Float
    /// Adam β₂ ∈ [0, 1). Default 0.999.
    public var beta2: Float
    /// Adam ε > 0. Default 1e-8.
    public var epsilon: Float
    /// L2 weight decay λ ≥ 0 added to the gradient (g + λθ). Default 0.
    public var weightDecay: Float
    /// Clip the mean batch gradient to this global L2 norm; nil disables clipping. Default 5.
    public var clipNorm: Float?

    /// Creates a configuration (all arguments defaulted as documented on the properties).
    public init(
        kind: Kind = .adam, learningRate: Float = 0.003, momentum: Float = 0.9, beta1: Float = 0.9,
        beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0, clipNorm: Float? = 5
    ) {
        self.kind = kind
        self.learningRate = learningRate
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.clipNorm = clipNorm
    }

    /// Checks ranges (η > 0, μ, β₁, β₂ ∈ [0, 1), ε > 0, λ ≥ 0, clip norm > 0); all must be finite.
    public func validate() throws {
        guard learningRate.isFinite, learningRate > 0 else {
            throw StudentError.config("optimizer.learning_rate", "must be finite and > 0 (got \(learningRate))")
        }
        for (n, v) in [("optimizer.momentum", momentum), ("optimizer.beta1", beta1), ("optimizer.beta2", beta2)]
        where !(v.isFinite && v >= 0 && v < 1) {
            throw StudentError.config(n, "must be in [0, 1) (got \(v))")
        }
        guard epsilon.isFinite, epsilon > 0 else {
            throw StudentError.config("optimizer.epsilon", "must be finite and > 0 (got \(epsilon))")
        }
        guard weightDecay.isFinite, weightDecay >= 0 else {
            throw StudentError.config("optimizer.weight_decay", "must be finite and ≥ 0 (got \(weightDecay))")
        }
        if let clipNorm, !(clipNorm.isFinite && clipNorm > 0) {
            throw StudentError.config("optimizer.clip_norm", "must be finite and > 0, or absent (got \(clipNorm))")
        }
    }
}

// MARK: - Optimizer

/// Applies one optimizer step to a flat parameter buffer. Owns its state buffers (momentum / Adam moments).
public final class StudentOptimizer {
    /// The configuration in use.
    public let configuration: StudentOptimizerConfiguration
    /// Number of steps applied so far (Adam's t).
    public internal(set) var stepCount: Int = 0
    let first: UnsafeMutableBufferPointer<Float>
    let second: UnsafeMutableBufferPointer<Float>

    /// Creates an optimizer for `parameterCount` parameters with zeroed state.
    public init(_ configuration: StudentOptimizerConfiguration, parameterCount: Int) {
        self.configuration = configuration
        first = .allocate(capacity: parameterCount)
        first.initialize(repeating: 0)
        second = .allocate(capacity: configuration.kind == .adam ? parameterCount : 0)
        second.initialize(repeating: 0)
    }

    deinit {
        first.deallocate()
        second.deallocate()
    }

    /// Clears the optimizer state (after a rollback or restore).
    public func reset() {
        first.update(repeating: 0)
        second.update(repeating: 0)
        stepCount = 0
    }

    /// L2 norm of `gradients`, accumulated in Double. Non-finite when any gradient is.
    public static func globalNorm(_ gradients: UnsafeBufferPointer<Float>) -> Double {
        var s = 0.0
        for g in gradients { s += Double(g) * Double(g) }
        return s.squareRoot()
    }

    /// θ ← update(θ, g). `gradients` must already be the (clipped) mean batch gradient and finite.
    public func step(parameters: UnsafeMutableBufferPointer<Float>, gradients: UnsafeBufferPointer<Float>) {
        precondition(parameters.count == gradients.count && parameters.count == first.count, "optimizer size")
        stepCount += 1
        let c = configuration
        let n = parameters.count
        let w = parameters.baseAddress!
        let g = gradients.baseAddress!
        let m = first.baseAddress!
        let lr = c.learningRate
        let wd = c.weightDecay
        switch c.kind {
        case .sgd:
            let mu = c.momentum
            for i in 0..<n {
                let gi = g[i] + wd * w[i]
                m[i] = mu * m[i] + gi
                w[i] -= lr * m[i]
            }
        case .adam:
            let v = second.baseAddress!
            let b1 = c.beta1
            let b2 = c.beta2
            let eps = c.epsilon
            let t = Double(stepCount)
            let c1 = Float(1 - pow(Double(b1), t))
            let c2 = Float(1 - pow(Double(b2), t))
            let stepSize = lr / c1
            let invC2 = 1 / c2
            for i in 0..<n {
                let gi = g[i] + wd * w[i]
                m[i] = b1 * m[i] + (1 - b1) * gi
                v[i] = b2 * v[i] + (1 - b2) * gi * gi
                w[i] -= stepSize * m[i] / ((v[i] * invC2).squareRoot() + eps)
            }
        }
    }
}
