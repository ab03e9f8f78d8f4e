// MARK: - Shape of the student network

/// Shape and initialisation of the student MLP.
///
/// The network is `features (D) → [ReLU hidden layers] → head (C logits)`, plus, when `auxiliaryHead` is true,
/// a second C-logit head on the same trunk that learns the teacher's soft labels
/// (see ``KDLoss/auxiliary(distillationWeight:)``).
/// `hiddenLayers == []` gives softmax regression.
public struct StudentModelConfiguration: Sendable, Equatable {
    /// Feature dimension D (length of a sample's `features`). No default: must match the stream.
    public var inputDimension: Int
    /// Number of classes C (length of the teacher's logits). No default: must match the stream.
    public var classCount: Int
    /// Widths of the ReLU hidden layers; `[]` (default) gives softmax regression.
    public var hiddenLayers: [Int]
    /// Whether the model has a distillation head `aux_head` beside the served `head`. Default false;
    /// ``OnlineDistillerConfiguration`` sets it for the auxiliary loss.
    public var auxiliaryHead: Bool
    /// Seed of the deterministic initialisation (He for hidden layers, Xavier for heads). Default 42.
    public var seed: UInt64

    /// Creates a configuration.
    public init(
        inputDimension: Int, classCount: Int, hiddenLayers: [Int] = [], auxiliaryHead: Bool = false, seed: UInt64 = 42
    ) {
        self.inputDimension = inputDimension
        self.classCount = classCount
        self.hiddenLayers = hiddenLayers
        self.auxiliaryHead = auxiliaryHead
        self.seed = seed
    }

    /// Checks ranges: D ≥ 1, C ≥ 2, every hidden width ≥ 1, and a total parameter count below 2^28.
    public func validate() throws {
        guard inputDimension >= 1 else { throw StudentError.config("model.input_dimension", "must be ≥ 1") }
        guard classCount >= 2 else { throw StudentError.config("model.classes", "must be ≥ 2 (got \(classCount))") }
        for (i, w) in hiddenLayers.enumerated() where w < 1 {
            throw StudentError.config("model.hidden_layers[\(i)]", "width must be ≥ 1 (got \(w))")
        }
        var count = 0
        var fanIn = inputDimension
        for w in hiddenLayers {
            count += w * fanIn + w
            fanIn = w
        }
        count += (auxiliaryHead ? 2 : 1) * (classCount * fanIn + classCount)
        guard count < 1 << 28 else {
            throw StudentError.config("model.hidden_layers", "model has \(count) parameters; keep it below 2^28")
        }
    }
}

// MARK: - Parameter layout

/// Where each dense layer lives in the flat parameter buffer.
///
/// Weights are stored row-major with shape `[out, in]` (PyTorch's `nn.Linear` convention), followed by the
/// bias `[out]`. Trunk layers come first, then `head`, then `aux_head`.
public struct StudentLayerSpan: Sendable, Equatable {
    /// Tensor name prefix: `trunk.<i>`, `head` or `aux_head`.
    public var name: String
    /// Input width.
    public var inCount: Int
    /// Output width.
    public var outCount: Int
    /// Offset of the first weight in the flat buffer.
    public var weightOffset: Int
    /// Offset of the first bias in the flat buffer.
    public var biasOffset: Int
    /// Number of weights (`outCount · inCount`).
    public var weightCount: Int { inCount * outCount }
}

/// The layer spans and total size of a student's flat parameter buffer.
public struct StudentModelLayout: Sendable, Equatable {
    /// ReLU hidden layers, in order.
    public var trunk: [StudentLayerSpan]
    /// The served head (logits used for predictions).
    public var head: StudentLayerSpan
    /// The distillation head, when configured.
    public var auxiliaryHead: StudentLayerSpan?
    /// Total number of parameters.
    public var parameterCount: Int

    /// Computes the layout for a configuration.
    public init(_ configuration: StudentModelConfiguration) {
        var offset = 0
        func span(_ name: String, _ inCount: Int, _ outCount: Int) -> StudentLayerSpan {
            let s = StudentLayerSpan(
                name: name, inCount: inCount, outCount: outCount,
                weightOffset: offset, biasOffset: offset + inCount * outCount)
            offset += inCount * outCount + outCount
            return s
        }
        var fanIn = configuration.inputDimension
        var trunk: [StudentLayerSpan] = []
        for (i, w) in configuration.hiddenLayers.enumerated() {
            trunk.append(span("trunk.\(i)", fanIn, w))
            fanIn = w
        }
        self.trunk = trunk
        self.head = span("head", fanIn, configuration.classCount)
        self.auxiliaryHead = configuration.auxiliaryHead ? span("aux_head", fanIn, configuration.classCount) : nil
        self.parameterCount = offset
    }

    /// All layers in buffer order.
    public var allLayers: [StudentLayerSpan] { trunk + [head] + (auxiliaryHead.map { [$0] } ?? []) }
}
