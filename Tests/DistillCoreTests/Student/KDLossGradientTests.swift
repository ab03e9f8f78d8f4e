import Foundation
import Numerics
import Testing

@testable import DistillCore

// MARK: - Gradients of every loss against central finite differences in Double

/// Cases: (loss, has teacher target, label).
private let lossCases: [(KDLoss, Bool, Int?)] = [
    (.hinton(alpha: 0.7), true, 2),
    (.hinton(alpha: 0.7), true, nil),
    (.hinton(alpha: 0.7), false, 1),
    (.dkd(), true, 2),
    (.dkd(), true, nil),  // target class = teacher argmax
    (.dkd(alpha: 0.5, beta: 3, labelWeight: 0.3), true, 0),
    (.auxiliary(distillationWeight: 0.8), true, 3),
    (.auxiliary(distillationWeight: 0.8), true, nil),
]

@Suite("KD loss gradients")
struct KDLossGradientTests {
    static let c = 5
    static let t: Float = 2

    static func referenceLoss(_ loss: KDLoss, z: [Double], za: [Double], p: [Double]?, y: Int?) -> Double {
        let t = Double(Self.t)
        switch loss {
        case .hinton(let a): return StudentReference.hinton(z, p: p, y: y, t: t, alpha: Double(a))
        case .dkd(let a, let b, let lw):
            guard let p else { return y.map { Double(lw) * StudentReference.ce(z, $0) } ?? 0 }
            let g = y ?? p.indices.max { p[$0] < p[$1] }!
            return StudentReference.dkd(z, p: p, g: g, y: y, t: t, alpha: Double(a), beta: Double(b), lw: Double(lw))
        case .auxiliary(let w): return StudentReference.auxiliary(z, za, p: p, y: y, t: t, w: Double(w))
        }
    }

    /// Analytic ∂L/∂z (Float kernels) vs central differences of the Double reference, for every loss and for
    /// served and auxiliary logits. Tolerance 1e-3 relative + 2e-4 absolute: a missing T factor or sign is O(1).
    @Test("∂L/∂logits matches finite differences", arguments: lossCases.indices)
    func logitGradients(caseIndex: Int) {
        let (loss, hasTarget, label) = lossCases[caseIndex]
        var rng = StudentRandom(seed: 100 + UInt64(caseIndex))
        let c = Self.c
        let z = (0..<c).map { _ in Float(rng.nextGaussian() * 2) }
        let za = (0..<c).map { _ in Float(rng.nextGaussian() * 2) }
        let teacher = (0..<c).map { _ in Float(rng.nextGaussian() * 3) }
        let p: [Float]? = hasTarget ? softmax(teacher, temperature: Self.t) : nil
        var gz = [Float](repeating: 0, count: c)
        var ga = [Float](repeating: 0, count: c)
        var scratch = [Float](repeating: 0, count: c)
        let value = z.withUnsafeBufferPointer { zb in
            za.withUnsafeBufferPointer { zab in
                gz.withUnsafeMutableBufferPointer { gzb in
                    ga.withUnsafeMutableBufferPointer { gab in
                        scratch.withUnsafeMutableBufferPointer { sb in
                            withOptionalBuffer(p) { pb in
                                loss.evaluate(
                                    served: zb, auxiliary: zab, target: pb, label: label, temperature: Self.t,
                                    servedGradient: gzb, auxiliaryGradient: gab, scratch: sb)
                            }
                        }
                    }
                }
            }
        }
        let zd = z.map(Double.init)
        let zad = za.map(Double.init)
        let pd = p?.map(Double.init)
        let ref = Self.referenceLoss(loss, z: zd, za: zad, p: pd, y: label)
        #expect(Double(value).isApproximatelyEqual(to: ref, absoluteTolerance: 1e-4, relativeTolerance: 1e-4))
        let h = 1e-5
        for i in 0..<c {
            var zp = zd
            var zm = zd
            zp[i] += h
            zm[i] -= h
            let fd =
                (Self.referenceLoss(loss, z: zp, za: zad, p: pd, y: label)
                    - Self.referenceLoss(loss, z: zm, za: zad, p: pd, y: label)) / (2 * h)
            #expect(
                Double(gz[i]).isApproximatelyEqual(to: fd, absoluteTolerance: 2e-4, relativeTolerance: 1e-3),
                "served ∂/∂z[\(i)]: analytic \(gz[i]) vs FD \(fd)")
            var ap = zad
            var am = zad
            ap[i] += h
            am[i] -= h
            let fda =
                (Self.referenceLoss(loss, z: zd, za: ap, p: pd, y: label)
                    - Self.referenceLoss(loss, z: zd, za: am, p: pd, y: label)) / (2 * h)
            #expect(
                Double(ga[i]).isApproximatelyEqual(to: fda, absoluteTolerance: 2e-4, relativeTolerance: 1e-3),
                "aux ∂/∂z[\(i)]: analytic \(ga[i]) vs FD \(fda)")
        }
    }

    @Test("consistency loss ∂L/∂logits matches finite differences")
    func consistencyGradient() {
        var rng = StudentRandom(seed: 7)
        let c = 6
        let z = (0..<c).map { _ in Float(rng.nextGaussian() * 2) }
        let q = softmax((0..<c).map { _ in Float(rng.nextGaussian()) })
        var g = [Float](repeating: 0, count: c)
        var s = [Float](repeating: 0, count: c)
        let v = z.withUnsafeBufferPointer { zb in
            q.withUnsafeBufferPointer { qb in
                g.withUnsafeMutableBufferPointer { gb in
                    s.withUnsafeMutableBufferPointer { sb in
                        ConsistencyLoss.evaluate(logits: zb, target: qb, weight: 0.6, gradient: gb, scratch: sb)
                    }
                }
            }
        }
        let zd = z.map(Double.init)
        let qd = q.map(Double.init)
        #expect(
            Double(v).isApproximatelyEqual(to: StudentReference.consistency(zd, q: qd, w: 0.6), relativeTolerance: 1e-4)
        )
        let h = 1e-5
        for i in 0..<c {
            var zp = zd
            var zm = zd
            zp[i] += h
            zm[i] -= h
            let fd =
                (StudentReference.consistency(zp, q: qd, w: 0.6) - StudentReference.consistency(zm, q: qd, w: 0.6))
                / (2 * h)
            #expect(Double(g[i]).isApproximatelyEqual(to: fd, absoluteTolerance: 1e-5, relativeTolerance: 1e-3))
        }
    }

    /// DKD stays finite when the student is extremely confident in the target class (s_g → 1 in Float).
    @Test("DKD is finite at saturation")
    func dkdSaturation() {
        let z: [Float] = [80, -20, -25, -30]
        let p = softmax([Float]([1, 3, 0, -1]), temperature: 1)
        var g = [Float](repeating: 0, count: 4)
        var s = [Float](repeating: 0, count: 4)
        let v = z.withUnsafeBufferPointer { zb in
            p.withUnsafeBufferPointer { pb in
                g.withUnsafeMutableBufferPointer { gb in
                    s.withUnsafeMutableBufferPointer { sb in
                        KDLoss.dkd().evaluate(
                            served: zb, auxiliary: nil, target: pb, label: 0, temperature: 1,
                            servedGradient: gb, auxiliaryGradient: nil, scratch: sb)
                    }
                }
            }
        }
        #expect(v.isFinite)
        #expect(g.allSatisfy { $0.isFinite })
    }
}

private func withOptionalBuffer<R>(_ a: [Float]?, _ body: (UnsafeBufferPointer<Float>?) -> R) -> R {
    guard let a else { return body(nil) }
    return a.withUnsafeBufferPointer { body($0) }
}

// MARK: - Weight gradients through the network

@Suite("Student model gradients")
struct StudentModelGradientTests {
    /// Backprop ∂L/∂θ for every parameter (trunk, head, aux_head) vs central differences of a Double
    /// re-implementation of the forward pass and the loss.
    @Test("∂L/∂θ matches finite differences for every loss", arguments: lossCases.indices)
    func weightGradients(caseIndex: Int) throws {
        let (loss, hasTarget, label) = lossCases[caseIndex]
        let config = StudentModelConfiguration(
            inputDimension: 5, classCount: KDLossGradientTests.c, hiddenLayers: [6, 4],
            auxiliaryHead: loss.needsAuxiliaryHead, seed: 11 + UInt64(caseIndex))
        let model = try StudentModel(config)
        var rng = StudentRandom(seed: 500 + UInt64(caseIndex))
        // Larger weights so the logits are not tiny (gradients would be too easy to match).
        model.parameterArray = model.parameterArray.map { $0 * 1.5 + Float(rng.nextGaussian() * 0.05) }
        let x = StudentStreams.features(&rng, 5)
        let teacher = (0..<KDLossGradientTests.c).map { _ in Float(rng.nextGaussian() * 3) }
        let p: [Float]? = hasTarget ? softmax(teacher, temperature: KDLossGradientTests.t) : nil

        var gz = [Float](repeating: 0, count: config.classCount)
        var ga = [Float](repeating: 0, count: config.classCount)
        var scratch = [Float](repeating: 0, count: config.classCount)
        model.zeroGradients()
        x.withUnsafeBufferPointer { model.forward($0) }
        withOptionalBuffer(p) { pb in
            gz.withUnsafeMutableBufferPointer { gzb in
                ga.withUnsafeMutableBufferPointer { gab in
                    scratch.withUnsafeMutableBufferPointer { sb in
                        _ = loss.evaluate(
                            served: UnsafeBufferPointer(model.logits),
                            auxiliary: UnsafeBufferPointer(model.auxiliaryLogits),
                            target: pb, label: label, temperature: KDLossGradientTests.t,
                            servedGradient: gzb, auxiliaryGradient: gab, scratch: sb)
                    }
                }
            }
        }
        gz.withUnsafeBufferPointer { g in
            ga.withUnsafeBufferPointer { model.backward(servedGradient: g, auxiliaryGradient: $0) }
        }
        let analytic = Array(model.gradients)

        let theta = model.parameterArray.map(Double.init)
        let xd = x.map(Double.init)
        let pd = p?.map(Double.init)
        func f(_ th: [Double]) -> Double {
            let (z, za) = StudentReference.forward(model.layout, th, xd)
            return KDLossGradientTests.referenceLoss(loss, z: z, za: za, p: pd, y: label)
        }
        let h = 1e-6
        var worst = 0.0
        var nonzero = 0
        for k in 0..<theta.count {
            var tp = theta
            var tm = theta
            tp[k] += h
            tm[k] -= h
            let fd = (f(tp) - f(tm)) / (2 * h)
            if abs(fd) > 1e-6 { nonzero += 1 }
            worst = max(worst, abs(Double(analytic[k]) - fd) / max(1e-2, abs(fd)))
            #expect(
                Double(analytic[k]).isApproximatelyEqual(to: fd, absoluteTolerance: 3e-4, relativeTolerance: 2e-3),
                "θ[\(k)]: analytic \(analytic[k]) vs FD \(fd)")
        }
        #expect(nonzero >= 10, "parameters should carry gradient (got \(nonzero)/\(theta.count))")
        let first = model.layout.trunk[0]
        let firstLayer = analytic[first.weightOffset..<(first.weightOffset + first.weightCount)]
        #expect(firstLayer.contains { $0 != 0 }, "the gradient must reach the first layer")
        #expect(worst < 0.02)
    }
}
