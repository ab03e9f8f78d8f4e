import Foundation

// MARK: - Dense kernels on contiguous buffers

/// Σ_i a[i]·b[i]: sixteen lanes at a time into two SIMD accumulators, then the lanes summed in a fixed order.
/// Without fast-math the compiler keeps a scalar reduction's order, so the lanes are explicit; multiply and add stay
/// separate (`addProduct` becomes one libm `fmaf` call per lane unless built for a CPU with FMA).
@inlinable
func studentDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    let ar = UnsafeRawPointer(a), br = UnsafeRawPointer(b)
    var v0 = SIMD16<Float>(), v1 = SIMD16<Float>()
    var i = 0
    while i &+ 32 <= n {
        let o = i &* 4
        v0 += ar.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
            * br.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
        v1 += ar.loadUnaligned(fromByteOffset: o &+ 64, as: SIMD16<Float>.self)
            * br.loadUnaligned(fromByteOffset: o &+ 64, as: SIMD16<Float>.self)
        i &+= 32
    }
    if i &+ 16 <= n {
        let o = i &* 4
        v0 += ar.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
            * br.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
        i &+= 16
    }
    var s = (v0 + v1).sum()
    while i < n {
        s += a[i] * b[i]
        i &+= 1
    }
    return s
}

/// y[i] += alpha·x[i] for i in 0..<n.
@inlinable
func studentAxpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { y[i] += alpha * x[i] }
}

// MARK: - Student model

/// The student MLP: one flat `Float` parameter buffer, one flat gradient buffer, and preallocated scratch.
///
/// Forward: a₀ = x, a_{l+1} = ReLU(W_l a_l + b_l), logits = W_head a_L + b_head (and the same for `aux_head`).
/// ``forward(_:parameters:)`` can run any parameter buffer of the same layout (the EMA copy uses it);
/// ``backward(servedGradient:auxiliaryGradient:)`` accumulates ∂L/∂θ for the student's own parameters into
/// ``gradients`` using the activations of the last forward on ``parameters``. No allocation after `init`.
///
/// Not thread-safe: one owner (the ``OnlineDistiller``) drives it.
public final class StudentModel {
    /// The configuration this model was built from.
    public let configuration: StudentModelConfiguration
    /// Where each layer lives in the flat buffers.
    public let layout: StudentModelLayout

    /// The trainable parameters (flat, see ``StudentModelLayout``).
    public let parameters: UnsafeMutableBufferPointer<Float>
    /// Accumulated gradients, same layout as ``parameters``.
    public let gradients: UnsafeMutableBufferPointer<Float>
    /// Served-head logits of the last forward pass (length C).
    public let logits: UnsafeMutableBufferPointer<Float>
    /// Auxiliary-head logits of the last forward pass (length C; zeros without an auxiliary head).
    public let auxiliaryLogits: UnsafeMutableBufferPointer<Float>

    /// a₀ … a_L concatenated.
    let activations: UnsafeMutableBufferPointer<Float>
    let activationOffsets: [Int]
    /// Two ping-pong delta buffers of the widest layer input.
    let deltaA: UnsafeMutableBufferPointer<Float>
    let deltaB: UnsafeMutableBufferPointer<Float>

    /// Builds a model with deterministic initial weights (He-normal for hidden layers, Xavier-normal for heads,
    /// zero biases) drawn from ``StudentModelConfiguration/seed``.
    public init(_ configuration: StudentModelConfiguration) throws {
        try configuration.validate()
        self.configuration = configuration
        let layout = StudentModelLayout(configuration)
        self.layout = layout
        parameters = .allocate(capacity: layout.parameterCount)
        parameters.initialize(repeating: 0)
        gradients = .allocate(capacity: layout.parameterCount)
        gradients.initialize(repeating: 0)
        logits = .allocate(capacity: configuration.classCount)
        logits.initialize(repeating: 0)
        auxiliaryLogits = .allocate(capacity: configuration.classCount)
        auxiliaryLogits.initialize(repeating: 0)
        var offsets = [0]
        var total = configuration.inputDimension
        var widest = configuration.inputDimension
        for w in configuration.hiddenLayers {
            offsets.append(total)
            total += w
            widest = max(widest, w)
        }
        activationOffsets = offsets
        activations = .allocate(capacity: total)
        activations.initialize(repeating: 0)
        deltaA = .allocate(capacity: max(widest, configuration.classCount))
        deltaA.initialize(repeating: 0)
        deltaB = .allocate(capacity: max(widest, configuration.classCount))
        deltaB.initialize(repeating: 0)

        var rng = StudentRandom(seed: configuration.seed)
        for span in layout.trunk {
            let sd = (2 / Double(span.inCount)).squareRoot()
            for k in 0..<span.weightCount { parameters[span.weightOffset + k] = Float(rng.nextGaussian() * sd) }
        }
        for span in [layout.head] + (layout.auxiliaryHead.map { [$0] } ?? []) {
            let sd = (2 / Double(span.inCount + span.outCount)).squareRoot()
            for k in 0..<span.weightCount { parameters[span.weightOffset + k] = Float(rng.nextGaussian() * sd) }
        }
    }

    deinit {
        parameters.deallocate()
        gradients.deallocate()
        logits.deallocate()
        auxiliaryLogits.deallocate()
        activations.deallocate()
        deltaA.deallocate()
        deltaB.deallocate()
    }

    /// Number of parameters.
    public var parameterCount: Int { layout.parameterCount }

    /// A copy of the parameters (cold path: tests, checkpoints).
    public var parameterArray: [Float] {
        get { Array(parameters) }
        set {
            precondition(newValue.count == parameterCount, "parameter count mismatch")
            _ = parameters.update(fromContentsOf: newValue)
        }
    }

    /// Sets all gradients to zero.
    public func zeroGradients() {
        gradients.update(repeating: 0)
    }

    // MARK: Forward

    /// Runs the network on `features` with `parameters` (the student's own when nil) and fills
    /// ``logits`` and ``auxiliaryLogits``. `features.count` must equal D.
    public func forward(_ features: UnsafeBufferPointer<Float>, parameters theta: UnsafeBufferPointer<Float>? = nil) {
        precondition(features.count == configuration.inputDimension, "feature length must equal input dimension")
        let w = theta?.baseAddress ?? UnsafePointer(parameters.baseAddress!)
        let act = activations.baseAddress!
        act.update(from: features.baseAddress!, count: features.count)
        for (l, span) in layout.trunk.enumerated() {
            let input = UnsafePointer(act + activationOffsets[l])
            let output = act + activationOffsets[l + 1]
            for o in 0..<span.outCount {
                let z =
                    w[span.biasOffset + o] + studentDot(w + span.weightOffset + o * span.inCount, input, span.inCount)
                output[o] = z > 0 ? z : 0
            }
        }
        let last = UnsafePointer(act + activationOffsets[layout.trunk.count])
        Self.dense(layout.head, w, last, logits.baseAddress!)
        if let aux = layout.auxiliaryHead { Self.dense(aux, w, last, auxiliaryLogits.baseAddress!) }
    }

    @inline(__always)
    static func dense(
        _ span: StudentLayerSpan, _ w: UnsafePointer<Float>, _ input: UnsafePointer<Float>,
        _ output: UnsafeMutablePointer<Float>
    ) {
        for o in 0..<span.outCount {
            output[o] =
                w[span.biasOffset + o] + studentDot(w + span.weightOffset + o * span.inCount, input, span.inCount)
        }
    }

    // MARK: Backward

    /// Adds ∂L/∂θ to ``gradients``, given ∂L/∂logits of the served head and (optionally) of the auxiliary head,
    /// using the activations of the last ``forward(_:parameters:)`` run on the student's own parameters.
    public func backward(servedGradient: UnsafeBufferPointer<Float>, auxiliaryGradient: UnsafeBufferPointer<Float>?) {
        let w = UnsafePointer(parameters.baseAddress!)
        let g = gradients.baseAddress!
        let act = activations.baseAddress!
        let lastIndex = layout.trunk.count
        let last = UnsafePointer(act + activationOffsets[lastIndex])
        var delta = deltaA.baseAddress!
        var spare = deltaB.baseAddress!
        let needInputDelta = lastIndex > 0
        let headIn = layout.head.inCount
        if needInputDelta { delta.update(repeating: 0, count: headIn) }
        Self.denseBackward(layout.head, w, g, last, servedGradient.baseAddress!, needInputDelta ? delta : nil)
        if let aux = layout.auxiliaryHead, let ga = auxiliaryGradient {
            Self.denseBackward(aux, w, g, last, ga.baseAddress!, needInputDelta ? delta : nil)
        }
        guard needInputDelta else { return }
        var l = lastIndex - 1
        while l >= 0 {
            let span = layout.trunk[l]
            let output = UnsafePointer(act + activationOffsets[l + 1])
            // ReLU: pass the delta only where the unit was active.
            for o in 0..<span.outCount where output[o] <= 0 { delta[o] = 0 }
            let input = UnsafePointer(act + activationOffsets[l])
            let wantsInput = l > 0
            if wantsInput { spare.update(repeating: 0, count: span.inCount) }
            Self.denseBackward(span, w, g, input, UnsafePointer(delta), wantsInput ? spare : nil)
            swap(&delta, &spare)
            l -= 1
        }
    }

    @inline(__always)
    static func denseBackward(
        _ span: StudentLayerSpan, _ w: UnsafePointer<Float>, _ g: UnsafeMutablePointer<Float>,
        _ input: UnsafePointer<Float>, _ dz: UnsafePointer<Float>, _ dInput: UnsafeMutablePointer<Float>?
    ) {
        for o in 0..<span.outCount {
            let d = dz[o]
            if d == 0 { continue }
            g[span.biasOffset + o] += d
            studentAxpy(d, input, g + span.weightOffset + o * span.inCount, span.inCount)
            if let dInput { studentAxpy(d, w + span.weightOffset + o * span.inCount, dInput, span.inCount) }
        }
    }

    // MARK: Tensors

    /// The named tensors of a parameter buffer with this layout, in buffer order:
    /// `trunk.<i>.weight` `[out, in]`, `trunk.<i>.bias` `[out]`, `head.*`, `aux_head.*`.
    public func tensors(of theta: UnsafeBufferPointer<Float>? = nil) -> [SafeTensor] {
        let w = theta ?? UnsafeBufferPointer(parameters)
        precondition(w.count == parameterCount, "parameter count mismatch")
        var out: [SafeTensor] = []
        for span in layout.allLayers {
            out.append(
                SafeTensor(
                    name: span.name + ".weight", shape: [span.outCount, span.inCount],
                    values: Array(w[span.weightOffset..<(span.weightOffset + span.weightCount)])))
            out.append(
                SafeTensor(
                    name: span.name + ".bias", shape: [span.outCount],
                    values: Array(w[span.biasOffset..<(span.biasOffset + span.outCount)])))
        }
        return out
    }

    /// Builds a flat parameter buffer for this layout from named tensors (the inverse of ``tensors(of:)``).
    /// Throws when a tensor is missing or has the wrong shape.
    public func flatParameters(from tensors: [SafeTensor]) throws -> [Float] {
        var byName: [String: SafeTensor] = [:]
        for t in tensors { byName[t.name] = t }
        var flat = [Float](repeating: 0, count: parameterCount)
        for span in layout.allLayers {
            for (suffix, shape, offset) in [
                ("weight", [span.outCount, span.inCount], span.weightOffset),
                ("bias", [span.outCount], span.biasOffset),
            ] {
                let name = span.name + "." + suffix
                guard let t = byName[name] else {
                    throw StudentError.checkpoint(name, "tensor missing; the checkpoint is for a different model shape")
                }
                guard t.shape == shape else {
                    throw StudentError.checkpoint(name, "shape \(t.shape) does not match the model's \(shape)")
                }
                for k in 0..<t.values.count { flat[offset + k] = t.values[k] }
            }
        }
        return flat
    }
}
