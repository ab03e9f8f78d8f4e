import Foundation

// MARK: - Distillation losses

/// The distillation loss of the online student.
///
/// Notation: z_s student logits, p_t the teacher's soft labels *at temperature T* (already averaged over teachers
/// for the ensemble strategy), y the hard label when the sample has one, q^T = softmax(z_s/T). Losses are in nats.
///
/// - ``hinton(alpha:)``: α·T²·KL(p_t ‖ q^T) + (1−α)·CE(y, softmax(z_s)) (Hinton, Vinyals & Dean 2015).
///   The CE term is present only on labeled samples and the KD term only when a teacher target is present.
///   ∂/∂z_s = α·T·(q^T − p_t) + (1−α)·(softmax(z_s) − e_y).
/// - ``dkd(alpha:beta:labelWeight:)``: decoupled KD (Zhao et al. 2022, "Decoupled Knowledge Distillation"):
///   T²·(α·TCKD + β·NCKD) + labelWeight·CE(y). With g the target class, TCKD = KL([p_g, 1−p_g] ‖ [q_g, 1−q_g])
///   over the binary target/non-target probabilities, and NCKD = KL(p̂ ‖ q̂) over the non-target classes
///   renormalised (p̂_i = p_i / Σ_{j≠g} p_j). **Target class choice:** g is the hard label when the sample has
///   one, otherwise the teacher's argmax (the paper always uses the ground truth; an online stream is mostly
///   unlabeled). When the teacher puts no mass off g, NCKD is 0 (p̂ is undefined). Defaults α = 1, β = 8.
/// - ``auxiliary(distillationWeight:)``: the served head learns only CE(y) on labeled samples; a separate
///   distillation head `aux_head` on the same trunk learns w·T²·KL(p_t ‖ softmax(z_aux/T)) (arXiv 2408.14678).
///   The teacher shapes the shared trunk but its bias cannot reach the served logits directly.
public enum KDLoss: Sendable, Equatable {
    /// Hinton KD plus hard-label cross-entropy; `alpha` weights the KD term (default 0.9).
    case hinton(alpha: Float = 0.9)
    /// Decoupled KD (defaults α = 1, β = 8, hard-label CE weight 1).
    case dkd(alpha: Float = 1, beta: Float = 8, labelWeight: Float = 1)
    /// Served head on hard labels only; distillation head on soft labels (weight default 1).
    case auxiliary(distillationWeight: Float = 1)

    /// The configuration name: `hinton`, `dkd` or `auxiliary`.
    public var name: String {
        switch self {
        case .hinton: "hinton"
        case .dkd: "dkd"
        case .auxiliary: "auxiliary"
        }
    }

    /// Whether the model needs an `aux_head`.
    public var needsAuxiliaryHead: Bool {
        if case .auxiliary = self { return true }
        return false
    }

    /// Checks that weights are finite and in range (α ∈ [0, 1] for Hinton; non-negative otherwise).
    public func validate() throws {
        switch self {
        case .hinton(let alpha):
            guard alpha.isFinite, (0...1).contains(alpha) else {
                throw StudentError.config("loss.alpha", "hinton alpha must be in [0, 1] (got \(alpha))")
            }
        case .dkd(let alpha, let beta, let labelWeight):
            for (n, v) in [("loss.alpha", alpha), ("loss.beta", beta), ("loss.label_weight", labelWeight)]
            where !(v.isFinite && v >= 0) {
                throw StudentError.config(n, "dkd weights must be finite and ≥ 0 (got \(v))")
            }
        case .auxiliary(let w):
            guard w.isFinite, w >= 0 else {
                throw StudentError.config("loss.distillation_weight", "must be finite and ≥ 0 (got \(w))")
            }
        }
    }

    /// Computes the loss of one sample and *overwrites* the gradients with respect to the logits.
    ///
    /// - Parameters:
    ///   - served: served-head logits z_s (length C).
    ///   - auxiliary: auxiliary-head logits (required for ``auxiliary(distillationWeight:)``, ignored otherwise).
    ///   - target: teacher soft labels at `temperature` (length C, sums to 1), or nil when no teacher is used.
    ///   - label: hard label in 0..<C, or nil.
    ///   - servedGradient: receives ∂L/∂z_s.
    ///   - auxiliaryGradient: receives ∂L/∂z_aux (zeros unless auxiliary).
    ///   - scratch: at least C floats of workspace.
    /// - Returns: the loss in nats (0 when the sample has neither target nor label).
    public func evaluate(
        served: UnsafeBufferPointer<Float>,
        auxiliary: UnsafeBufferPointer<Float>?,
        target: UnsafeBufferPointer<Float>?,
        label: Int?,
        temperature: Float,
        servedGradient: UnsafeMutableBufferPointer<Float>,
        auxiliaryGradient: UnsafeMutableBufferPointer<Float>?,
        scratch: UnsafeMutableBufferPointer<Float>
    ) -> Float {
        let c = served.count
        precondition(servedGradient.count == c && scratch.count >= c, "KDLoss: buffer sizes")
        servedGradient.update(repeating: 0)
        auxiliaryGradient?.update(repeating: 0)
        var loss: Float = 0
        switch self {
        case .hinton(let alpha):
            if let target, alpha > 0 {
                loss += KDLossKernels.softKL(
                    served, target, temperature, weight: alpha, gradient: servedGradient, scratch: scratch)
            }
            if let label, alpha < 1 {
                loss += KDLossKernels.crossEntropy(
                    served, label, weight: 1 - alpha, gradient: servedGradient, scratch: scratch)
            }
        case .dkd(let alpha, let beta, let labelWeight):
            if let target {
                let g = label ?? argmax(target)
                loss += KDLossKernels.decoupled(
                    served, target, g, temperature, alpha: alpha, beta: beta, gradient: servedGradient, scratch: scratch
                )
            }
            if let label, labelWeight > 0 {
                loss += KDLossKernels.crossEntropy(
                    served, label, weight: labelWeight, gradient: servedGradient, scratch: scratch)
            }
        case .auxiliary(let w):
            if let label {
                loss += KDLossKernels.crossEntropy(served, label, weight: 1, gradient: servedGradient, scratch: scratch)
            }
            if let target, let auxiliary, let auxiliaryGradient, w > 0 {
                loss += KDLossKernels.softKL(
                    auxiliary, target, temperature, weight: w, gradient: auxiliaryGradient, scratch: scratch)
            }
        }
        return loss
    }
}

// MARK: - Kernels

/// Loss kernels on contiguous buffers. Each *adds* its gradient (∂/∂logits) into `gradient`.
enum KDLossKernels {
    /// w·T²·KL(p ‖ softmax(z/T)); gradient w·T·(softmax(z/T) − p). Terms with p_i = 0 contribute 0.
    @inline(__always)
    static func softKL(
        _ z: UnsafeBufferPointer<Float>, _ p: UnsafeBufferPointer<Float>, _ t: Float, weight: Float,
        gradient: UnsafeMutableBufferPointer<Float>, scratch: UnsafeMutableBufferPointer<Float>
    ) -> Float {
        let c = z.count
        let invT = 1 / t
        var m = z[0]
        for i in 1..<c where z[i] > m { m = z[i] }
        var sum: Float = 0
        for i in 0..<c {
            let e = expf((z[i] - m) * invT)
            scratch[i] = e
            sum += e
        }
        let logSum = logf(sum)
        let inv = 1 / sum
        var kl: Float = 0
        for i in 0..<c {
            let pi = p[i]
            if pi > 0 {
                let logQ = (z[i] - m) * invT - logSum
                kl += pi * (logf(pi) - logQ)
            }
            gradient[i] += weight * t * (scratch[i] * inv - pi)
        }
        return weight * t * t * kl
    }

    /// w·CE(y, softmax(z)) = w·(LSE(z) − z_y); gradient w·(softmax(z) − e_y).
    @inline(__always)
    static func crossEntropy(
        _ z: UnsafeBufferPointer<Float>, _ y: Int, weight: Float,
        gradient: UnsafeMutableBufferPointer<Float>, scratch: UnsafeMutableBufferPointer<Float>
    ) -> Float {
        let c = z.count
        var m = z[0]
        for i in 1..<c where z[i] > m { m = z[i] }
        var sum: Float = 0
        for i in 0..<c {
            let e = expf(z[i] - m)
            scratch[i] = e
            sum += e
        }
        let inv = 1 / sum
        for i in 0..<c { gradient[i] += weight * scratch[i] * inv }
        gradient[y] -= weight
        return weight * (m + logf(sum) - z[y])
    }

    /// T²·(α·TCKD + β·NCKD) with target class g (see ``KDLoss/dkd(alpha:beta:labelWeight:)``).
    ///
    /// With u = z/T, s = softmax(u), ŝ the non-target renormalised softmax:
    /// with P = Σ_{j≠g} p_j: ∂TCKD/∂u_g = s_g·(p_g + P) − p_g, ∂TCKD/∂u_j = ŝ_j·(p_g(1 − s_g) − P·s_g) (j ≠ g);
    /// ∂NCKD/∂u_j = ŝ_j − p̂_j (j ≠ g), 0 at g.
    /// ∂/∂z = (T²/T)·(…). Computed in log space so s_g → 1 stays finite.
    @inline(__always)
    static func decoupled(
        _ z: UnsafeBufferPointer<Float>, _ p: UnsafeBufferPointer<Float>, _ g: Int, _ t: Float,
        alpha: Float, beta: Float,
        gradient: UnsafeMutableBufferPointer<Float>, scratch: UnsafeMutableBufferPointer<Float>
    ) -> Float {
        let c = z.count
        let invT = 1 / t
        // Max over non-target and over all.
        var mNon = -Float.infinity
        for i in 0..<c where i != g && z[i] > mNon { mNon = z[i] }
        // Non-target exponentials relative to mNon → ŝ in scratch.
        var sumNon: Float = 0
        for i in 0..<c {
            if i == g {
                scratch[i] = 0
                continue
            }
            let e = expf((z[i] - mNon) * invT)
            scratch[i] = e
            sumNon += e
        }
        let logSumNon = logf(sumNon) + mNon * invT  // log Σ_{j≠g} e^{u_j}
        let ug = z[g] * invT
        // log Σ_all = logaddexp(u_g, logSumNon)
        let hi = max(ug, logSumNon)
        let logSumAll = hi + logf(expf(ug - hi) + expf(logSumNon - hi))
        let logSg = ug - logSumAll  // log s_g
        let logNotSg = logSumNon - logSumAll  // log(1 − s_g)
        let sg = expf(logSg)
        let invNon = 1 / sumNon
        for i in 0..<c where i != g { scratch[i] *= invNon }  // ŝ_i

        // Teacher binary and non-target distributions.
        let pg = p[g]
        var pNon: Float = 0
        for i in 0..<c where i != g { pNon += p[i] }
        var tckd: Float = 0
        if pg > 0 { tckd += pg * (logf(pg) - logSg) }
        if pNon > 0 { tckd += pNon * (logf(pNon) - logNotSg) }
        var nckd: Float = 0
        let hasNon = pNon > 0
        let invPNon = hasNon ? 1 / pNon : 0
        if hasNon {
            for i in 0..<c where i != g {
                let ph = p[i] * invPNon
                if ph > 0 {
                    let logSh = (z[i] - mNon) * invT - logf(sumNon)
                    nckd += ph * (logf(ph) - logSh)
                }
            }
        }
        // Gradients (scaled by T²/T = T), exact for the (p_g, Σ_{j≠g} p_j) used in TCKD above.
        let notSg = expf(logNotSg)
        gradient[g] += t * alpha * (sg * (pg + pNon) - pg)
        let tcOff = alpha * (pg * notSg - pNon * sg)
        for i in 0..<c where i != g {
            let sh = scratch[i]
            var d = sh * tcOff
            if hasNon { d += beta * (sh - p[i] * invPNon) }
            gradient[i] += t * d
        }
        return t * t * (alpha * tckd + beta * nckd)
    }
}
