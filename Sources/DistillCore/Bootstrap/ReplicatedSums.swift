// MARK: - Replicated sufficient statistics

/// A block of `width` running sums, each kept once for the point estimate and once per bootstrap replicate.
///
/// Storage is one contiguous `[Double]`, column-major: column k occupies `values[k*(B+1) ..< (k+1)*(B+1)]`,
/// row 0 being the unweighted (point) sum and row r the sum weighted by replicate r's Poisson weights.
/// `merge` adds element-wise, so merging disjoint panes or partitions equals accumulating their union
/// (exactly for counts — integer-valued Doubles below 2^53 — and up to summation order for real sums).
public struct ReplicatedSums: Sendable, Codable, Equatable {
    /// Number of statistics (columns).
    public let width: Int
    /// Number of bootstrap replicates B.
    public let replicates: Int
    /// The sums, column-major, `width × (replicates + 1)`.
    public private(set) var values: [Double]

    /// Zero sums for `width` statistics and `replicates` replicates.
    public init(width: Int, replicates: Int) {
        self.width = width
        self.replicates = replicates
        self.values = [Double](repeating: 0, count: width * (replicates + 1))
    }

    enum CodingKeys: String, CodingKey { case width, replicates, values }

    /// Decodes and checks the shape (a checkpoint must not smuggle in a mis-sized buffer).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        width = try c.decode(Int.self, forKey: .width)
        replicates = try c.decode(Int.self, forKey: .replicates)
        values = try c.decode([Double].self, forKey: .values)
        guard width >= 0, replicates >= 0, values.count == width * (replicates + 1) else {
            throw DecodingError.dataCorruptedError(forKey: .values, in: c,
                                                   debugDescription: "ReplicatedSums: values do not match the shape")
        }
    }

    /// Rows per column (B + 1).
    @inlinable
    public var rows: Int { replicates + 1 }

    /// Adds `x × weight[r]` to column `column` for every row r.
    public mutating func add(_ column: Int, _ x: Double, weights: BootstrapWeights) {
        precondition(weights.replicates == replicates, "ReplicatedSums: replicate count mismatch")
        let n = rows
        let base = column * n
        weights.values.withUnsafeBufferPointer { w in
            values.withUnsafeMutableBufferPointer { v in
                for r in 0..<n { v[base + r] += w[r] * x }
            }
        }
    }

    /// Adds `weight[r]` to column `column` (a weighted count).
    public mutating func count(_ column: Int, weights: BootstrapWeights) {
        add(column, 1, weights: weights)
    }

    /// The sum in `column` for row `row` (0 = point estimate).
    @inlinable
    public func value(_ column: Int, row: Int = 0) -> Double {
        values[column * rows + row]
    }

    /// Adds another block of the same shape.
    public mutating func merge(_ other: ReplicatedSums) {
        precondition(width == other.width && replicates == other.replicates, "ReplicatedSums: shape mismatch")
        values.withUnsafeMutableBufferPointer { v in
            other.values.withUnsafeBufferPointer { o in
                for i in 0..<v.count { v[i] += o[i] }
            }
        }
    }

    /// Evaluates `figure(row)` for the point row and every replicate row, returning the estimate and
    /// its percentile interval, or nil if the point figure is undefined (NaN, e.g. no samples).
    public func estimate(level: Double = 0.95, _ figure: (Int) -> Double) -> BootstrapEstimate? {
        let point = figure(0)
        guard point.isFinite else { return nil }
        var reps: [Double] = []
        reps.reserveCapacity(replicates)
        if replicates > 0 {
            for r in 1...replicates {
                let v = figure(r)
                if v.isFinite { reps.append(v) }
            }
        }
        return BootstrapEstimate(point: point, replicateValues: reps, level: level)
    }

    /// Ratio estimate Σ numerator / Σ denominator (for example accuracy = Σw·correct / Σw), computed per row.
    public func ratio(_ numerator: Int, _ denominator: Int, level: Double = 0.95) -> BootstrapEstimate? {
        estimate(level: level) { r in
            let d = value(denominator, row: r)
            return d > 0 ? value(numerator, row: r) / d : .nan
        }
    }
}

/// A point estimate with a percentile-bootstrap confidence interval.
///
/// The interval is the (α/2, 1 − α/2) empirical quantiles (linear interpolation, Hyndman–Fan type 7)
/// of the replicate estimates; α = 1 − level. Ratio figures are replicate ratios Σw·x / Σw, not means of
/// per-replicate means. Replicates whose figure is undefined (zero weight) are left out and counted.
public struct BootstrapEstimate: Sendable, Codable, Equatable {
    /// The point estimate (all weights 1).
    public var value: Double
    /// Lower end of the interval.
    public var lower: Double
    /// Upper end of the interval.
    public var upper: Double
    /// Number of replicates that gave a defined figure.
    public var replicates: Int

    /// Creates an estimate with explicit bounds.
    public init(value: Double, lower: Double, upper: Double, replicates: Int) {
        self.value = value
        self.lower = lower
        self.upper = upper
        self.replicates = replicates
    }

    /// Percentile interval from replicate values; with no replicates the interval collapses to the point.
    public init(point: Double, replicateValues: [Double], level: Double = 0.95) {
        var sorted = replicateValues
        sorted.sort()
        let alpha = 1 - level
        self.value = point
        self.replicates = sorted.count
        if sorted.isEmpty {
            self.lower = point
            self.upper = point
        } else {
            self.lower = Self.quantile(sorted, alpha / 2)
            self.upper = Self.quantile(sorted, 1 - alpha / 2)
        }
    }

    /// Type-7 quantile of an ascending array (q in [0, 1]).
    public static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        precondition(!sorted.isEmpty, "quantile of an empty array")
        let h = Double(sorted.count - 1) * q
        let lo = Int(h.rounded(.down))
        let hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (h - Double(lo)) * (sorted[hi] - sorted[lo])
    }

    /// True if `x` lies inside the closed interval.
    public func contains(_ x: Double) -> Bool { lower <= x && x <= upper }
}
