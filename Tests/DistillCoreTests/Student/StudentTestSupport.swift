import Foundation

@testable import DistillCore

// MARK: - Synthetic teachers and streams for the student tests

/// A fixed nonlinear teacher: logits = scale · W₂·tanh(W₁x + b₁) + bias, weights from a seeded RNG.
struct SyntheticTeacher {
    let d: Int
    let c: Int
    let h: Int
    var w1: [Double]
    var b1: [Double]
    var w2: [Double]
    var scale: Double
    /// Added to the logits (to model a biased teacher).
    var logitBias: [Double]

    init(seed: UInt64, d: Int, c: Int, hidden: Int = 16, scale: Double = 3) {
        var rng = StudentRandom(seed: seed)
        self.d = d
        self.c = c
        self.h = hidden
        w1 = (0..<(hidden * d)).map { _ in rng.nextGaussian() / Double(d).squareRoot() * 1.5 }
        b1 = (0..<hidden).map { _ in rng.nextGaussian() * 0.3 }
        w2 = (0..<(c * hidden)).map { _ in rng.nextGaussian() / Double(hidden).squareRoot() }
        self.scale = scale
        logitBias = [Double](repeating: 0, count: c)
    }

    func logits(_ x: [Float]) -> [Float] {
        var hidden = [Double](repeating: 0, count: h)
        for j in 0..<h {
            var s = b1[j]
            for i in 0..<d { s += w1[j * d + i] * Double(x[i]) }
            hidden[j] = tanh(s)
        }
        return (0..<c).map { k in
            var s = 0.0
            for j in 0..<h { s += w2[k * h + j] * hidden[j] }
            return Float(scale * s + logitBias[k])
        }
    }

    /// A copy whose weights are perturbed by relative noise `amount` (a retrained, similar teacher).
    func perturbed(seed: UInt64, amount: Double) -> SyntheticTeacher {
        var rng = StudentRandom(seed: seed)
        var t = self
        t.w1 = w1.map { $0 + amount * rng.nextGaussian() / Double(d).squareRoot() * 1.5 }
        t.w2 = w2.map { $0 + amount * rng.nextGaussian() / Double(h).squareRoot() }
        return t
    }
}

extension StudentStreams {
    /// Standard-normal features of dimension `d`.
    static func features(_ rng: inout StudentRandom, _ d: Int) -> [Float] {
        (0..<d).map { _ in Float(rng.nextGaussian()) }
    }

    /// Non-overlapping window means of a 0/1 sequence.
    static func windowMeans(_ flags: [Bool], window: Int) -> [Double] {
        stride(from: 0, to: flags.count - window + 1, by: window).map { s in
            Double(flags[s..<(s + window)].filter { $0 }.count) / Double(window)
        }
    }

    /// Population variance.
    static func variance(_ xs: [Double]) -> Double {
        guard !xs.isEmpty else { return 0 }
        let m = xs.reduce(0, +) / Double(xs.count)
        return xs.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(xs.count)
    }
}

// MARK: - Double reference implementations (independent of the Float kernels)

enum StudentReference {
    static func logSoftmax(_ z: [Double], _ t: Double = 1) -> [Double] {
        let u = z.map { $0 / t }
        let m = u.max()!
        let lse = m + log(u.reduce(0) { $0 + exp($1 - m) })
        return u.map { $0 - lse }
    }

    static func kl(_ p: [Double], _ logQ: [Double]) -> Double {
        var s = 0.0
        for i in 0..<p.count where p[i] > 0 { s += p[i] * (log(p[i]) - logQ[i]) }
        return s
    }

    static func ce(_ z: [Double], _ y: Int) -> Double { -logSoftmax(z)[y] }

    static func hinton(_ z: [Double], p: [Double]?, y: Int?, t: Double, alpha: Double) -> Double {
        var l = 0.0
        if let p { l += alpha * t * t * kl(p, logSoftmax(z, t)) }
        if let y { l += (1 - alpha) * ce(z, y) }
        return l
    }

    static func dkd(_ z: [Double], p: [Double], g: Int, y: Int?, t: Double, alpha: Double, beta: Double, lw: Double)
        -> Double
    {
        let q = logSoftmax(z, t).map(exp)
        let pg = p[g]
        let pn = p.enumerated().filter { $0.offset != g }.reduce(0) { $0 + $1.element }
        let qg = q[g]
        let qn = 1 - qg
        var tckd = 0.0
        if pg > 0 { tckd += pg * log(pg / qg) }
        if pn > 0 { tckd += pn * log(pn / qn) }
        var nckd = 0.0
        if pn > 0 {
            let zn = z.enumerated().filter { $0.offset != g }.map(\.element)
            let ln = logSoftmax(zn, t)
            let ph = p.enumerated().filter { $0.offset != g }.map { $0.element / pn }
            nckd = kl(ph, ln)
        }
        var l = t * t * (alpha * tckd + beta * nckd)
        if let y { l += lw * ce(z, y) }
        return l
    }

    static func auxiliary(_ z: [Double], _ za: [Double], p: [Double]?, y: Int?, t: Double, w: Double) -> Double {
        var l = 0.0
        if let y { l += ce(z, y) }
        if let p { l += w * t * t * kl(p, logSoftmax(za, t)) }
        return l
    }

    static func consistency(_ z: [Double], q: [Double], w: Double) -> Double {
        let p = logSoftmax(z).map(exp)
        return w * zip(p, q).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Double(z.count)
    }

    /// Double forward pass of a student with `layout` and flat parameters `theta`: (served, auxiliary) logits.
    static func forward(_ layout: StudentModelLayout, _ theta: [Double], _ x: [Double]) -> ([Double], [Double]) {
        var a = x
        func dense(_ s: StudentLayerSpan, _ input: [Double]) -> [Double] {
            (0..<s.outCount).map { o in
                var v = theta[s.biasOffset + o]
                for i in 0..<s.inCount { v += theta[s.weightOffset + o * s.inCount + i] * input[i] }
                return v
            }
        }
        for s in layout.trunk { a = dense(s, a).map { max($0, 0) } }
        let served = dense(layout.head, a)
        let aux = layout.auxiliaryHead.map { dense($0, a) } ?? []
        return (served, aux)
    }
}
