import Foundation

// MARK: - Softmax and friends on contiguous Float buffers
//
// Shared by the statistics (Windows, Calibration) and the student (Student). Accumulation is in Double
// where a sum over classes feeds a reported figure, so results do not depend on class order beyond rounding.

/// Numerically stable softmax at temperature `temperature`.
///
/// p_i = exp((z_i − max z)/T) / Σ_j exp((z_j − max z)/T). `output.count` must equal `logits.count`.
/// Edge cases: T must be > 0; an empty input writes nothing.
@inlinable
public func softmax(
    _ logits: UnsafeBufferPointer<Float>, temperature: Float = 1, into output: UnsafeMutableBufferPointer<Float>
) {
    precondition(output.count == logits.count, "softmax: output length must equal logits length")
    guard !logits.isEmpty else { return }
    var m = logits[0]
    for z in logits where z > m { m = z }
    let invT = 1 / temperature
    var sum: Float = 0
    for i in 0..<logits.count {
        let e = expf((logits[i] - m) * invT)
        output[i] = e
        sum += e
    }
    let inv = 1 / sum
    for i in 0..<logits.count { output[i] *= inv }
}

/// Softmax returning a new array (convenience for cold paths and tests).
public func softmax(_ logits: [Float], temperature: Float = 1) -> [Float] {
    var out = [Float](repeating: 0, count: logits.count)
    logits.withUnsafeBufferPointer { z in
        out.withUnsafeMutableBufferPointer { o in softmax(z, temperature: temperature, into: o) }
    }
    return out
}

/// log Σ_i exp(z_i / T), computed stably in Double.
@inlinable
public func logSumExp(_ logits: UnsafeBufferPointer<Float>, temperature: Double = 1) -> Double {
    guard !logits.isEmpty else { return -.infinity }
    var m = Double(logits[0])
    for z in logits where Double(z) > m { m = Double(z) }
    var s = 0.0
    for z in logits { s += exp((Double(z) - m) / temperature) }
    return m / temperature + log(s)
}

/// KL(p ‖ q) in nats between softmax(a) and softmax(b), both at temperature `temperature`.
///
/// KL = Σ_i p_i (log p_i − log q_i), with log p_i = a_i/T − LSE(a/T). Computed in Double from logits,
/// so a class with p_i underflowing to 0 contributes exactly 0 and q_i = 0 cannot produce NaN.
@inlinable
public func klDivergence(
    logitsP a: UnsafeBufferPointer<Float>, logitsQ b: UnsafeBufferPointer<Float>, temperature: Double = 1
) -> Double {
    precondition(a.count == b.count, "klDivergence: logits lengths differ")
    let lseA = logSumExp(a, temperature: temperature)
    let lseB = logSumExp(b, temperature: temperature)
    var kl = 0.0
    for i in 0..<a.count {
        let logP = Double(a[i]) / temperature - lseA
        let logQ = Double(b[i]) / temperature - lseB
        let p = exp(logP)
        if p > 0 { kl += p * (logP - logQ) }
    }
    return max(kl, 0)
}

/// KL(softmax(a) ‖ softmax(b)) for arrays (cold paths and tests).
public func klDivergence(_ a: [Float], _ b: [Float], temperature: Double = 1) -> Double {
    a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in klDivergence(logitsP: pa, logitsQ: pb, temperature: temperature) }
    }
}

/// Index of the largest element; ties go to the lowest index (matches numpy.argmax). Empty input gives -1.
@inlinable
public func argmax(_ values: UnsafeBufferPointer<Float>) -> Int {
    guard !values.isEmpty else { return -1 }
    var best = 0
    var bestValue = values[0]
    for i in 1..<values.count where values[i] > bestValue {
        best = i
        bestValue = values[i]
    }
    return best
}

/// argmax for arrays (cold paths and tests).
public func argmax(_ values: [Float]) -> Int {
    values.withUnsafeBufferPointer { argmax($0) }
}
