import Foundation

// MARK: - Gate evidence and policy

/// The evidence the caller supplies for the checkpoint gate: the EMA student's prequential figures from the
/// daemon's windows, with their confidence intervals (e.g. bootstrap, 95%).
public struct GateEvidence: Sendable, Equatable {
    /// Point estimate of the prequential top-1 agreement with the teacher.
    public var agreement: Double
    /// Lower bound of the agreement's confidence interval.
    public var agreementLower: Double
    /// Upper bound of the agreement's confidence interval.
    public var agreementUpper: Double
    /// Prequential expected calibration error, when labels allow it.
    public var ece: Double?
    /// ECE confidence interval (lower, upper), when available.
    public var eceInterval: ClosedRange<Double>?
    /// Samples behind these figures.
    public var sampleCount: Int

    /// Creates evidence.
    public init(
        agreement: Double, agreementLower: Double, agreementUpper: Double, ece: Double? = nil,
        eceInterval: ClosedRange<Double>? = nil, sampleCount: Int
    ) {
        self.agreement = agreement
        self.agreementLower = agreementLower
        self.agreementUpper = agreementUpper
        self.ece = ece
        self.eceInterval = eceInterval
        self.sampleCount = sampleCount
    }
}

/// When student checkpoints are written, and how many are kept for rollback.
public struct StudentCheckpointPolicy: Sendable, Equatable {
    /// Minimum samples learned between two checkpoints. Default 10 000.
    public var intervalSamples: Int
    /// The agreement interval's lower bound must be at least this (default 0.95: agreement ≥ 0.95 with the
    /// evidence's confidence).
    public var minimumAgreementLower: Double
    /// When set, the ECE point estimate (or the interval's upper bound when given) must not exceed it. Default nil.
    public var maximumECE: Double?
    /// Checkpoints kept in memory and in the state checkpoint for rollback. Default 3.
    public var retained: Int

    /// Creates a policy (all arguments defaulted as documented on the properties).
    public init(
        intervalSamples: Int = 10_000, minimumAgreementLower: Double = 0.95, maximumECE: Double? = nil,
        retained: Int = 3
    ) {
        self.intervalSamples = intervalSamples
        self.minimumAgreementLower = minimumAgreementLower
        self.maximumECE = maximumECE
        self.retained = retained
    }

    /// Checks ranges: interval ≥ 1, agreement bound in [0, 1], ECE bound in [0, 1], retained ≥ 1.
    public func validate() throws {
        guard intervalSamples >= 1 else { throw StudentError.config("checkpoint.interval_samples", "must be ≥ 1") }
        guard minimumAgreementLower.isFinite, (0...1).contains(minimumAgreementLower) else {
            throw StudentError.config("checkpoint.min_agreement_lower", "must be in [0, 1]")
        }
        if let m = maximumECE, !(m.isFinite && (0...1).contains(m)) {
            throw StudentError.config("checkpoint.max_ece", "must be in [0, 1] or absent")
        }
        guard retained >= 1 else { throw StudentError.config("checkpoint.retained", "must be ≥ 1") }
    }

    /// Decides whether a checkpoint is due and passes the gate.
    public func decide(samplesSinceLastCheckpoint: Int, evidence: GateEvidence?) -> CheckpointGateDecision {
        guard samplesSinceLastCheckpoint >= intervalSamples else { return .notDue }
        guard let evidence else { return .blocked(reason: "no prequential evidence yet") }
        guard evidence.agreementLower.isFinite, evidence.agreementLower >= minimumAgreementLower else {
            return .blocked(
                reason: String(
                    format: "agreement lower bound %.4f < %.4f", evidence.agreementLower, minimumAgreementLower))
        }
        if let maximumECE {
            guard let ece = evidence.eceInterval?.upperBound ?? evidence.ece, ece.isFinite else {
                return .blocked(reason: "ECE required by the gate but not available")
            }
            guard ece <= maximumECE else {
                return .blocked(reason: String(format: "ECE %.4f > %.4f", ece, maximumECE))
            }
        }
        return .write
    }
}

/// Outcome of the checkpoint gate.
public enum CheckpointGateDecision: Sendable, Equatable {
    /// The interval has not elapsed.
    case notDue
    /// Write a checkpoint.
    case write
    /// Due, but the gate failed (reason for logs and the decision record).
    case blocked(reason: String)
}

// MARK: - Metadata

/// Metadata stored in a student checkpoint's safetensors `__metadata__` (all values are strings there).
public struct StudentCheckpointMetadata: Sendable, Equatable {
    /// Format tag written as `format`.
    public static let formatTag = "distilld.student.v1"

    /// Teacher version(s) the student learned from since the previous checkpoint (`teacher_versions`, JSON array).
    public var teacherVersions: [String]
    /// The teacher strategy, e.g. `latest`, `lts:distilbert-v6`, `ensemble:3` (`teacher_strategy`).
    public var teacherStrategy: String
    /// Loss name: `hinton`, `dkd` or `auxiliary` (`loss`).
    public var lossName: String
    /// Distillation temperature (`kd_temperature`).
    public var kdTemperature: Float
    /// Samples learned in total (`samples_seen`).
    public var samplesSeen: Int
    /// Optimizer steps applied (`optimizer_steps`).
    public var optimizerSteps: Int
    /// Running mean batch loss in nats (`loss_value`), when known.
    public var loss: Double?
    /// Gate evidence: agreement and interval, ECE and interval (`agreement`, `agreement_lower`, …).
    public var evidence: GateEvidence
    /// Fitted calibration temperature of the published model (`calibration_temperature`), when fitted.
    public var calibrationTemperature: Double?
    /// The decision record that caused this checkpoint (`decision`, free text or JSON from the caller).
    public var decision: String
    /// Creation time in ms since the epoch (`created_at`).
    public var createdAtMilliseconds: Int64
    /// Model shape: D, C and hidden widths (`input_dimension`, `classes`, `hidden_layers`).
    public var inputDimension: Int
    /// Number of classes.
    public var classCount: Int
    /// Hidden layer widths.
    public var hiddenLayers: [Int]

    /// Creates metadata.
    public init(
        teacherVersions: [String], teacherStrategy: String, lossName: String, kdTemperature: Float, samplesSeen: Int,
        optimizerSteps: Int, loss: Double?, evidence: GateEvidence, calibrationTemperature: Double?, decision: String,
        createdAtMilliseconds: Int64, inputDimension: Int, classCount: Int, hiddenLayers: [Int]
    ) {
        self.teacherVersions = teacherVersions
        self.teacherStrategy = teacherStrategy
        self.lossName = lossName
        self.kdTemperature = kdTemperature
        self.samplesSeen = samplesSeen
        self.optimizerSteps = optimizerSteps
        self.loss = loss
        self.evidence = evidence
        self.calibrationTemperature = calibrationTemperature
        self.decision = decision
        self.createdAtMilliseconds = createdAtMilliseconds
        self.inputDimension = inputDimension
        self.classCount = classCount
        self.hiddenLayers = hiddenLayers
    }

    /// The `__metadata__` string map.
    public var stringDictionary: [String: String] {
        var d: [String: String] = [
            "format": Self.formatTag,
            "teacher_versions": Self.jsonArray(teacherVersions.map { SafeTensors.jsonString($0) }),
            "teacher_strategy": teacherStrategy,
            "loss": lossName,
            "kd_temperature": "\(kdTemperature)",
            "samples_seen": "\(samplesSeen)",
            "optimizer_steps": "\(optimizerSteps)",
            "agreement": "\(evidence.agreement)",
            "agreement_lower": "\(evidence.agreementLower)",
            "agreement_upper": "\(evidence.agreementUpper)",
            "evidence_samples": "\(evidence.sampleCount)",
            "decision": decision,
            "created_at": "\(createdAtMilliseconds)",
            "input_dimension": "\(inputDimension)",
            "classes": "\(classCount)",
            "hidden_layers": Self.jsonArray(hiddenLayers.map(String.init)),
        ]
        if let loss { d["loss_value"] = "\(loss)" }
        if let ece = evidence.ece { d["ece"] = "\(ece)" }
        if let i = evidence.eceInterval {
            d["ece_lower"] = "\(i.lowerBound)"
            d["ece_upper"] = "\(i.upperBound)"
        }
        if let calibrationTemperature { d["calibration_temperature"] = "\(calibrationTemperature)" }
        return d
    }

    static func jsonArray(_ items: [String]) -> String { "[" + items.joined(separator: ",") + "]" }

    /// Parses the `__metadata__` map written by ``stringDictionary``. Throws naming the missing or bad key.
    public init(stringDictionary d: [String: String]) throws {
        func req(_ k: String) throws -> String {
            guard let v = d[k] else { throw StudentError.checkpoint("__metadata__.\(k)", "missing") }
            return v
        }
        func num<T: LosslessStringConvertible>(_ k: String, _: T.Type) throws -> T {
            guard let v = T(try req(k)) else { throw StudentError.checkpoint("__metadata__.\(k)", "not a number") }
            return v
        }
        func opt(_ k: String) throws -> Double? {
            guard let s = d[k] else { return nil }
            guard let v = Double(s) else { throw StudentError.checkpoint("__metadata__.\(k)", "not a number") }
            return v
        }
        func array<T>(_ k: String, _: T.Type) throws -> [T] {
            guard let data = try req(k).data(using: .utf8),
                let a = try? JSONSerialization.jsonObject(with: data) as? [Any]
            else { throw StudentError.checkpoint("__metadata__.\(k)", "not a JSON array") }
            return try a.map {
                guard let v = $0 as? T else { throw StudentError.checkpoint("__metadata__.\(k)", "bad element") }
                return v
            }
        }
        guard try req("format") == Self.formatTag else {
            throw StudentError.checkpoint("__metadata__.format", "not a \(Self.formatTag) checkpoint")
        }
        teacherVersions = try array("teacher_versions", String.self)
        teacherStrategy = try req("teacher_strategy")
        lossName = try req("loss")
        kdTemperature = try num("kd_temperature", Float.self)
        samplesSeen = try num("samples_seen", Int.self)
        optimizerSteps = try num("optimizer_steps", Int.self)
        loss = try opt("loss_value")
        let eceLower = try opt("ece_lower")
        let eceUpper = try opt("ece_upper")
        var interval: ClosedRange<Double>?
        if let eceLower, let eceUpper, eceLower <= eceUpper { interval = eceLower...eceUpper }
        evidence = GateEvidence(
            agreement: try num("agreement", Double.self), agreementLower: try num("agreement_lower", Double.self),
            agreementUpper: try num("agreement_upper", Double.self), ece: try opt("ece"), eceInterval: interval,
            sampleCount: try num("evidence_samples", Int.self))
        calibrationTemperature = try opt("calibration_temperature")
        decision = try req("decision")
        createdAtMilliseconds = try num("created_at", Int64.self)
        inputDimension = try num("input_dimension", Int.self)
        classCount = try num("classes", Int.self)
        hiddenLayers = try array("hidden_layers", Int.self)
    }
}

// MARK: - Checkpoint

/// A published student: the EMA weights as named tensors plus ``StudentCheckpointMetadata``.
public struct StudentCheckpoint: Sendable, Equatable {
    /// The EMA model's tensors (`trunk.<i>.weight|bias`, `head.*`, `aux_head.*`).
    public var tensors: [SafeTensor]
    /// Pairing, evidence and decision record.
    public var metadata: StudentCheckpointMetadata

    /// Creates a checkpoint.
    public init(tensors: [SafeTensor], metadata: StudentCheckpointMetadata) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// The safetensors encoding.
    public func safetensors() -> [UInt8] { SafeTensors.encode(tensors, metadata: metadata.stringDictionary) }

    /// Reads a checkpoint from safetensors bytes.
    public init(safetensors bytes: [UInt8]) throws {
        let (tensors, metadata) = try SafeTensors.decode(bytes)
        self.tensors = tensors
        self.metadata = try StudentCheckpointMetadata(stringDictionary: metadata)
    }
}

extension OnlineDistiller {
    /// Snapshots the EMA model as a checkpoint (applying any partial batch first is the caller's choice via
    /// ``flush()``). The teacher versions are those used since the last ``resetTeacherVersions()``.
    public func makeCheckpoint(
        evidence: GateEvidence, teacherStrategy: String, decision: String, calibrationTemperature: Double? = nil,
        createdAtMilliseconds: Int64
    ) -> StudentCheckpoint {
        let m = configuration.model
        let metadata = StudentCheckpointMetadata(
            teacherVersions: teacherVersionsUsed, teacherStrategy: teacherStrategy, lossName: configuration.loss.name,
            kdTemperature: configuration.temperature, samplesSeen: samplesSeen, optimizerSteps: stepsApplied,
            loss: runningLoss, evidence: evidence, calibrationTemperature: calibrationTemperature, decision: decision,
            createdAtMilliseconds: createdAtMilliseconds, inputDimension: m.inputDimension, classCount: m.classCount,
            hiddenLayers: m.hiddenLayers)
        return StudentCheckpoint(
            tensors: model.tensors(of: UnsafeBufferPointer(meanTeacher.parameters)), metadata: metadata)
    }

    /// Restores student and EMA weights from a checkpoint (rollback). Throws when the shapes do not match.
    public func restore(from checkpoint: StudentCheckpoint) throws {
        restore(parameters: try model.flatParameters(from: checkpoint.tensors))
    }
}

// MARK: - Rollback ring

/// The last N student checkpoints (default 3), newest last, for rollback; serialisable into the state checkpoint.
public struct StudentCheckpointRing: Sendable, Equatable {
    /// Maximum number kept.
    public let capacity: Int
    /// Kept checkpoints, oldest first.
    public private(set) var checkpoints: [StudentCheckpoint] = []

    /// Creates an empty ring keeping `capacity` (≥ 1) checkpoints.
    public init(capacity: Int = 3) {
        precondition(capacity >= 1, "capacity must be ≥ 1")
        self.capacity = capacity
    }

    /// The newest checkpoint.
    public var latest: StudentCheckpoint? { checkpoints.last }

    /// Adds a checkpoint, dropping the oldest beyond capacity.
    public mutating func push(_ checkpoint: StudentCheckpoint) {
        checkpoints.append(checkpoint)
        if checkpoints.count > capacity { checkpoints.removeFirst(checkpoints.count - capacity) }
    }

    /// Drops the newest checkpoint and returns the one before it (the rollback target), or nil when fewer than
    /// two are kept (nothing is dropped then).
    public mutating func rollback() -> StudentCheckpoint? {
        guard checkpoints.count >= 2 else { return nil }
        checkpoints.removeLast()
        return checkpoints.last
    }

    /// Serialises the ring: `"DSCR"`, UInt32 count, then per checkpoint a UInt64 length and its safetensors bytes
    /// (all little-endian).
    public func serialized() -> [UInt8] {
        var out = Array("DSCR".utf8)
        withUnsafeBytes(of: UInt32(checkpoints.count).littleEndian) { out.append(contentsOf: $0) }
        for c in checkpoints {
            let bytes = c.safetensors()
            withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { out.append(contentsOf: $0) }
            out.append(contentsOf: bytes)
        }
        return out
    }

    /// Reads a ring written by ``serialized()``, keeping at most `capacity` newest checkpoints.
    public init(serialized bytes: [UInt8], capacity: Int = 3) throws {
        self.init(capacity: capacity)
        guard bytes.count >= 8, Array(bytes[0..<4]) == Array("DSCR".utf8) else {
            throw StudentError.checkpoint("ring", "not a student checkpoint ring (bad magic)")
        }
        func readInt(_ at: Int, _ width: Int) throws -> Int {
            guard at + width <= bytes.count else { throw StudentError.checkpoint("ring", "truncated") }
            var v: UInt64 = 0
            for k in 0..<width { v |= UInt64(bytes[at + k]) << (8 * UInt64(k)) }
            guard v < UInt64(Int.max) else { throw StudentError.checkpoint("ring", "length overflow") }
            return Int(v)
        }
        let count = try readInt(4, 4)
        var p = 8
        for _ in 0..<count {
            let n = try readInt(p, 8)
            p += 8
            guard n <= bytes.count - p else { throw StudentError.checkpoint("ring", "truncated checkpoint") }
            push(try StudentCheckpoint(safetensors: Array(bytes[p..<(p + n)])))
            p += n
        }
    }
}
