// MARK: - Streaming Poisson bootstrap weights
//
// Chamandy, Muralidharan, Najmi & Naik (2012), "Estimating Uncertainty for Massive Data Streams":
// each sample gets, for each of B replicates, an independent Poisson(1) weight. Weights are derived
// from a stable hash of the sample id, so a replay reproduces identical replicates, and replicate
// accumulators of disjoint panes or partitions merge by addition.

/// Bootstrap weights of one sample: index 0 is the point estimate (weight 1), 1...B are Poisson(1) draws.
///
/// A reusable buffer: call `reset(idHash:)` per sample; no allocation after `init`.
public struct BootstrapWeights: Sendable {
    /// Number of bootstrap replicates B.
    public let replicates: Int
    /// `replicates + 1` weights; `values[0] == 1`.
    public private(set) var values: [Double]

    /// Creates a buffer for `replicates` replicates (B ≥ 0; B = 0 disables intervals).
    public init(replicates: Int) {
        precondition(replicates >= 0, "BootstrapWeights: replicates must be >= 0")
        self.replicates = replicates
        self.values = [Double](repeating: 1, count: replicates + 1)
    }

    /// Creates the weights for a sample id.
    public init(replicates: Int, id: String) {
        self.init(replicates: replicates)
        reset(idHash: StableHash.id(id))
    }

    /// Recomputes the weights for a sample whose id hashes to `idHash` (see `StableHash.id`).
    /// Replicate b (1-based) uses the b-th output of the SplitMix64 stream seeded with the hash,
    /// mapped to Poisson(1) by inverse-CDF lookup on its top 53 bits.
    public mutating func reset(idHash: UInt64) {
        let b = replicates
        values.withUnsafeMutableBufferPointer { w in
            w[0] = 1
            if b == 0 { return }
            PoissonOne.thresholds.withUnsafeBufferPointer { t in
                let wp = w.baseAddress!, tp = t.baseAddress!, tn = t.count
                // The SplitMix64 stream's r-th state is seed + (r + 1)·γ: step it by γ instead of multiplying.
                var state = idHash &+ 0x9e37_79b9_7f4a_7c15
                for r in 1...b {
                    state &+= 0x9e37_79b9_7f4a_7c15
                    // Same draw as `PoissonOne.draw(uniformBits: StableHash.splitMix(seed: idHash, index: r))`.
                    let u = StableHash.mix(state) >> 11
                    var k = 0
                    while k < tn && u >= tp[k] { k &+= 1 }
                    wp[r] = Double(k)
                }
            }
        }
    }

    /// Sets every weight, including replicates, to 1 (a sample that should count in all replicates alike).
    public mutating func resetToOnes() {
        for i in values.indices { values[i] = 1 }
    }
}

/// Poisson(1) by inverse CDF: P(K = k) = e^{-1}/k!.
public enum PoissonOne {
    /// Cumulative probabilities P(K ≤ k) scaled to 2^53, k = 0...17 (P(K > 17) < 1e-15).
    @usableFromInline
    static let thresholds: [UInt64] = {
        var out: [UInt64] = []
        var p = 0.36787944117144233  // e^-1
        var cdf = 0.0
        for k in 0...17 {
            cdf += p
            out.append(UInt64(min(cdf, 1) * 9_007_199_254_740_992.0))
            p /= Double(k + 1)
        }
        return out
    }()

    /// Maps 64 random bits to a Poisson(1) draw (uses the top 53 bits as a uniform in [0, 1)).
    @inlinable
    public static func draw(uniformBits: UInt64) -> Int {
        let u = uniformBits >> 11
        var k = 0
        while k < thresholds.count && u >= thresholds[k] { k += 1 }
        return k
    }
}
