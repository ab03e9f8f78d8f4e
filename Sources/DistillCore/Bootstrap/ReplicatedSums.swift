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
        values = try c.decodePacked(Double.self, forKey: .values)
        guard width >= 0, replicates >= 0, values.count == width * (replicates + 1) else {
            throw DecodingError.dataCorruptedError(forKey: .values, in: c,
                                                   debugDescription: "ReplicatedSums: values do not match the shape")
        }
    }

    /// Encodes the sums packed (`PackedNumbers`): exact and cheap for checkpoints.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(width, forKey: .width)
        try c.encode(replicates, forKey: .replicates)
        try c.encodePacked(values, forKey: .values)
    }

    /// Rows per column (B + 1).
    @inlinable
    public var rows: Int { replicates + 1 }

    /// Adds `x × weight[r]` to column `column` for every row r.
    public mutating func add(_ column: Int, _ x: Double, weights: BootstrapWeights) {
        precondition(weights.replicates == replicates, "ReplicatedSums: replicate count mismatch")
        precondition(column >= 0 && column < width, "ReplicatedSums: column out of range")
        let n = rows
        weights.values.withUnsafeBufferPointer { w in
            values.withUnsafeMutableBufferPointer { v in
                Self.addColumn(v.baseAddress! + column * n, w.baseAddress!, x, count: n)
            }
        }
    }

    /// Adds `weight[r]` to column `column` (a weighted count).
    public mutating func count(_ column: Int, weights: BootstrapWeights) {
        precondition(weights.replicates == replicates, "ReplicatedSums: replicate count mismatch")
        precondition(column >= 0 && column < width, "ReplicatedSums: column out of range")
        let n = rows
        weights.values.withUnsafeBufferPointer { w in
            values.withUnsafeMutableBufferPointer { v in
                Self.addColumn(v.baseAddress! + column * n, w.baseAddress!, count: n)
            }
        }
    }

    /// Applies every entry of `update` (`add(column, x)` for each), in one access to the storage.
    ///
    /// Same result, bit for bit, as the sequence of `add`/`count` calls it describes: each element gets
    /// `w[r] × x` (or `w[r]` for a count) added once, and the entries' columns are distinct.
    public mutating func apply(_ update: ReplicatedUpdate, weights: BootstrapWeights) {
        precondition(weights.replicates == replicates, "ReplicatedSums: replicate count mismatch")
        let n = rows
        let columns = width
        weights.values.withUnsafeBufferPointer { w in
            values.withUnsafeMutableBufferPointer { v in
                let wp = w.baseAddress!, vp = v.baseAddress!
                update.forEach { column, x, isCount in
                    precondition(column >= 0 && column < columns, "ReplicatedSums: column out of range")
                    if isCount {
                        Self.addColumn(vp + column * n, wp, count: n)
                    } else {
                        Self.addColumn(vp + column * n, wp, x, count: n)
                    }
                }
            }
        }
    }

    /// v[r] += w[r] × x for r in 0..<count, eight rows at a time. Each lane is one IEEE multiply then one add
    /// (never fused), so the result is bit for bit that of the scalar loop.
    @inline(__always)
    static func addColumn(_ v: UnsafeMutablePointer<Double>, _ w: UnsafePointer<Double>, _ x: Double, count: Int) {
        let vr = UnsafeMutableRawPointer(v), wr = UnsafeRawPointer(w)
        let xs = SIMD8<Double>(repeating: x)
        var r = 0
        while r &+ 8 <= count {
            let offset = r &* 8
            let sum = vr.loadUnaligned(fromByteOffset: offset, as: SIMD8<Double>.self)
                + wr.loadUnaligned(fromByteOffset: offset, as: SIMD8<Double>.self) * xs
            vr.storeBytes(of: sum, toByteOffset: offset, as: SIMD8<Double>.self)
            r &+= 8
        }
        while r < count {
            v[r] += w[r] * x
            r &+= 1
        }
    }

    /// v[r] += w[r] for r in 0..<count (identical to adding `w[r] × 1`), eight rows at a time.
    @inline(__always)
    static func addColumn(_ v: UnsafeMutablePointer<Double>, _ w: UnsafePointer<Double>, count: Int) {
        let vr = UnsafeMutableRawPointer(v), wr = UnsafeRawPointer(w)
        var r = 0
        while r &+ 8 <= count {
            let offset = r &* 8
            let sum = vr.loadUnaligned(fromByteOffset: offset, as: SIMD8<Double>.self)
                + wr.loadUnaligned(fromByteOffset: offset, as: SIMD8<Double>.self)
            vr.storeBytes(of: sum, toByteOffset: offset, as: SIMD8<Double>.self)
            r &+= 8
        }
        while r < count {
            v[r] += w[r]
            r &+= 1
        }
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
                Self.addColumn(v.baseAddress!, o.baseAddress!, count: v.count)
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

/// A short list of distinct-column additions to a `ReplicatedSums` (at most `capacity` entries), built once per
/// sample and applied to every pane it lands in (`ReplicatedSums.apply(_:weights:)`). Fixed-size storage: building
/// and applying one never allocates.
public struct ReplicatedUpdate: Sendable {
    /// Maximum number of entries.
    public static let capacity = 16

    /// Number of entries.
    public private(set) var count = 0
    var columns: (Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32,
                  Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var values: (Double, Double, Double, Double, Double, Double, Double, Double,
                 Double, Double, Double, Double, Double, Double, Double, Double) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    /// Bit i set: entry i is a weighted count (adds `w[r]`, exactly `w[r] × 1`).
    var countMask: UInt32 = 0

    /// An empty update.
    public init() {}

    /// True if there is nothing to add.
    public var isEmpty: Bool { count == 0 }

    /// Removes every entry.
    public mutating func removeAll() {
        count = 0
        countMask = 0
    }

    /// Appends `x × weight[r]` to `column` (the column must not already be in the list).
    public mutating func add(_ column: Int, _ x: Double) {
        precondition(count < Self.capacity, "ReplicatedUpdate: more than \(Self.capacity) entries")
        let i = count
        withUnsafeMutableBytes(of: &columns) { $0.storeBytes(of: Int32(column), toByteOffset: i * 4, as: Int32.self) }
        withUnsafeMutableBytes(of: &values) { $0.storeBytes(of: x, toByteOffset: i * 8, as: Double.self) }
        count = i + 1
    }

    /// Appends a weighted count (`weight[r]`) to `column`.
    public mutating func count(_ column: Int) {
        countMask |= 1 << UInt32(count)
        add(column, 1)
    }

    /// Calls `body(column, x, isCount)` for each entry in order.
    @inline(__always)
    func forEach(_ body: (Int, Double, Bool) -> Void) {
        let mask = countMask
        withUnsafeBytes(of: columns) { c in
            withUnsafeBytes(of: values) { v in
                for i in 0..<count {
                    body(Int(c.load(fromByteOffset: i * 4, as: Int32.self)),
                         v.load(fromByteOffset: i * 8, as: Double.self), mask & (1 << UInt32(i)) != 0)
                }
            }
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
