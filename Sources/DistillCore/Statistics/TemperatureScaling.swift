import Foundation

// MARK: - Temperature scaling fit

/// Result of fitting a softmax temperature by maximum likelihood.
public struct TemperatureFit: Sendable, Codable, Equatable {
    /// The fitted temperature T* (> 0).
    public var temperature: Double
    /// Mean NLL in nats at T*.
    public var negativeLogLikelihood: Double
    /// Mean NLL in nats at T = 1.
    public var negativeLogLikelihoodAtOne: Double
    /// Newton/bisection iterations used.
    public var iterations: Int
    /// True if the gradient condition was met inside the bounds.
    public var converged: Bool
    /// True if the optimum lies at (or beyond) a bound of the search interval, for example when every
    /// sample is classified correctly and the NLL keeps falling as T → 0.
    public var atBound: Bool
    /// Number of labeled samples used.
    public var samples: Int

    /// Creates a fit result.
    public init(temperature: Double, negativeLogLikelihood: Double, negativeLogLikelihoodAtOne: Double,
                iterations: Int, converged: Bool, atBound: Bool, samples: Int) {
        self.temperature = temperature
        self.negativeLogLikelihood = negativeLogLikelihood
        self.negativeLogLikelihoodAtOne = negativeLogLikelihoodAtOne
        self.iterations = iterations
        self.converged = converged
        self.atBound = atBound
        self.samples = samples
    }
}

/// Temperature scaling (Guo et al. 2017, §4.2): T* = argmin_{T>0} (1/N) Σ_i [LSE(z_i/T) − z_{i,y_i}/T].
///
/// With β = 1/T the objective g(β) = (1/N) Σ [LSE(β z_i) − β z_{i,y_i}] is convex (a log-sum-exp of linear
/// functions), with g'(β) = mean(E_{p_β}[z] − z_y) and g''(β) = mean(Var_{p_β}(z)) ≥ 0. We run Newton on β,
/// safeguarded by a bisection bracket (geometric midpoint) inside [1/maxT, 1/minT]. All sums in Double.
public enum TemperatureScaling {
    /// Fits T* on `labels.count` samples with flat logits (N × `classes`).
    ///
    /// - Parameters:
    ///   - range: search interval for T (default 0.05...20).
    ///   - tolerance: stop when |g'(β)| ≤ tolerance (nats per unit β) or the bracket is tighter than 1e-12 β.
    /// - Returns: nil if there are no samples.
    public static func fit(logits: [Float], labels: [Int], classes: Int, range: ClosedRange<Double> = 0.05...20,
                           tolerance: Double = 1e-10) -> TemperatureFit? {
        precondition(logits.count == labels.count * classes, "TemperatureScaling.fit: shape")
        precondition(range.lowerBound > 0, "TemperatureScaling.fit: T range must be positive")
        let n = labels.count
        guard n > 0 else { return nil }
        return logits.withUnsafeBufferPointer { z -> TemperatureFit in
            // Returns (g, g', g'') at β.
            func evaluate(_ beta: Double) -> (Double, Double, Double) {
                var g = 0.0, g1 = 0.0, g2 = 0.0
                for i in 0..<n {
                    let row = UnsafeBufferPointer(rebasing: z[i * classes ..< (i + 1) * classes])
                    var m = -Double.infinity
                    for v in row { m = max(m, beta * Double(v)) }
                    var s = 0.0, s1 = 0.0, s2 = 0.0
                    for v in row {
                        let zv = Double(v)
                        let e = exp(beta * zv - m)
                        s += e
                        s1 += e * zv
                        s2 += e * zv * zv
                    }
                    let mean = s1 / s
                    let zy = Double(row[labels[i]])
                    g += m + log(s) - beta * zy
                    g1 += mean - zy
                    g2 += max(s2 / s - mean * mean, 0)
                }
                let dn = Double(n)
                return (g / dn, g1 / dn, g2 / dn)
            }
            let nllAtOne = evaluate(1).0
            var lo = 1 / range.upperBound   // small β = large T
            var hi = 1 / range.lowerBound
            let gLo = evaluate(lo).1
            if gLo >= 0 {
                return TemperatureFit(temperature: range.upperBound, negativeLogLikelihood: evaluate(lo).0,
                                      negativeLogLikelihoodAtOne: nllAtOne, iterations: 0, converged: true,
                                      atBound: true, samples: n)
            }
            let gHi = evaluate(hi).1
            if gHi <= 0 {
                return TemperatureFit(temperature: range.lowerBound, negativeLogLikelihood: evaluate(hi).0,
                                      negativeLogLikelihoodAtOne: nllAtOne, iterations: 0, converged: true,
                                      atBound: true, samples: n)
            }
            var beta = min(max(1, lo), hi)
            var iterations = 0
            var converged = false
            while iterations < 200 {
                iterations += 1
                let (_, d1, d2) = evaluate(beta)
                if abs(d1) <= tolerance { converged = true; break }
                if d1 > 0 { hi = beta } else { lo = beta }
                if hi - lo <= 1e-12 * beta { converged = true; break }
                let newton = d2 > 0 ? beta - d1 / d2 : .nan
                beta = (newton > lo && newton < hi) ? newton : (lo * hi).squareRoot()
            }
            return TemperatureFit(temperature: 1 / beta, negativeLogLikelihood: evaluate(beta).0,
                                  negativeLogLikelihoodAtOne: nllAtOne, iterations: iterations,
                                  converged: converged, atBound: false, samples: n)
        }
    }
}
