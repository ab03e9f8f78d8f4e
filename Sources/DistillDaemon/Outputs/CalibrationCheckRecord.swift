import DistillCore
import KafkaClient

// MARK: - distill.calibration: one calibration check per model version and window

/// One record on `distill.calibration`: the calibration check of one model version (teacher or served
/// student) at the close of a calibration window.
public struct CalibrationCheckRecord: Sendable, Codable, Equatable, DistillJSONOutput {
    /// Deterministic id: hex SHA-256 of the netstring-framed `role, version, slice (or empty), window name,
    /// start, end`.
    public var id: String
    /// `distilld/<instance>`.
    public var source: String
    /// RFC 3339 of the window end (event time, not wall clock).
    public var time: String
    /// Model version.
    public var version: String
    /// `teacher` or `student`.
    public var role: String
    /// Slice, nil for all slices pooled.
    public var slice: String?
    /// The calibration window.
    public var window: CalibrationCheckRecordWindow
    /// Labeled samples behind the figures; nil only if not finite.
    public var samples: Double?
    /// Confidence level of every interval.
    public var level: Double
    /// `ok`, `drift` or `insufficient_data`.
    public var status: String
    /// Why the status is what it is.
    public var reasons: [String]
    /// Top-1 accuracy.
    public var accuracy: DistillOutputEstimate?
    /// 15-bin (equal-width) ECE.
    public var ece: DistillOutputEstimate?
    /// Equal-mass (adaptive) ECE.
    public var adaptiveECE: Double?
    /// Class-wise ECE.
    public var classwiseECE: Double?
    /// Maximum calibration error.
    public var mce: Double?
    /// Mean negative log-likelihood, nats.
    public var nll: DistillOutputEstimate?
    /// Mean Brier score.
    public var brier: DistillOutputEstimate?
    /// Baseline ECE the check compared against, if one is pinned for the version.
    public var baselineECE: Double?
    /// Deployed temperature from the teacher registry, if known.
    public var deployedTemperature: Double?
    /// Fitted temperature T*, if fitted.
    public var fittedTemperature: Double?
    /// Details of the fit.
    public var temperatureFit: CalibrationCheckRecordFit?
    /// Reliability diagram bins.
    public var bins: [CalibrationCheckRecordBin]
    /// Configuration revision.
    public var configRevision: String

    /// The default topic.
    public static let topic = "distill.calibration"

    /// The written form of a DistillCore calibration check.
    public init(_ c: CalibrationCheck, context: DistillOutputContext) {
        id = DistillOutputSHA256.hex(fields: [c.role.rawValue, c.version, c.slice ?? "", c.window,
                                              String(c.windowStart), String(c.windowEnd)])
        source = context.source
        time = DistillOutputTime.rfc3339(milliseconds: c.windowEnd)
        version = c.version
        role = c.role.rawValue
        slice = c.slice
        window = CalibrationCheckRecordWindow(name: c.window, start: c.windowStart, end: c.windowEnd)
        samples = DistillOutputJSON.finite(c.samples)
        level = context.confidenceLevel
        status = c.status.rawValue
        reasons = c.reasons
        accuracy = DistillOutputEstimate(c.accuracy)
        ece = DistillOutputEstimate(c.ece)
        adaptiveECE = DistillOutputJSON.finite(c.adaptiveECE)
        classwiseECE = DistillOutputJSON.finite(c.classwiseECE)
        mce = DistillOutputJSON.finite(c.mce)
        nll = DistillOutputEstimate(c.nll)
        brier = DistillOutputEstimate(c.brier)
        baselineECE = DistillOutputJSON.finite(c.baselineECE)
        deployedTemperature = DistillOutputJSON.finite(c.deployedTemperature)
        fittedTemperature = DistillOutputJSON.finite(c.fittedTemperature)
        temperatureFit = c.temperatureFit.map(CalibrationCheckRecordFit.init)
        bins = c.bins.map(CalibrationCheckRecordBin.init)
        configRevision = context.configRevision
    }

    /// Records of a batch of checks, in order.
    public static func records(from checks: [CalibrationCheck], context: DistillOutputContext)
        -> [CalibrationCheckRecord] {
        checks.map { CalibrationCheckRecord($0, context: context) }
    }

    enum CodingKeys: String, CodingKey {
        case id, source, time, version, role, slice, window, samples, level, status, reasons, accuracy, ece,
             adaptiveECE = "adaptive_ece", classwiseECE = "classwise_ece", mce, nll, brier,
             baselineECE = "baseline_ece", deployedTemperature = "deployed_temperature",
             fittedTemperature = "fitted_temperature", temperatureFit = "temperature_fit", bins,
             configRevision = "config_revision"
    }

    /// Encodes every key, `null` for absent or non-finite values.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(source, forKey: .source)
        try c.encode(time, forKey: .time)
        try c.encode(version, forKey: .version)
        try c.encode(role, forKey: .role)
        try c.encodeOrNull(slice, forKey: .slice)
        try c.encode(window, forKey: .window)
        try c.encodeFinite(samples, forKey: .samples)
        try c.encode(level, forKey: .level)
        try c.encode(status, forKey: .status)
        try c.encode(reasons, forKey: .reasons)
        try c.encodeOrNull(accuracy, forKey: .accuracy)
        try c.encodeOrNull(ece, forKey: .ece)
        try c.encodeFinite(adaptiveECE, forKey: .adaptiveECE)
        try c.encodeFinite(classwiseECE, forKey: .classwiseECE)
        try c.encodeFinite(mce, forKey: .mce)
        try c.encodeOrNull(nll, forKey: .nll)
        try c.encodeOrNull(brier, forKey: .brier)
        try c.encodeFinite(baselineECE, forKey: .baselineECE)
        try c.encodeFinite(deployedTemperature, forKey: .deployedTemperature)
        try c.encodeFinite(fittedTemperature, forKey: .fittedTemperature)
        try c.encodeOrNull(temperatureFit, forKey: .temperatureFit)
        try c.encode(bins, forKey: .bins)
        try c.encode(configRevision, forKey: .configRevision)
    }

    /// The message key: the model version.
    public var key: String { version }

    /// The window end: the event time the record describes.
    public var eventTimeMillis: Int64 { window.end }
}

/// The calibration window of a check.
public struct CalibrationCheckRecordWindow: Sendable, Codable, Equatable {
    /// Window name.
    public var name: String
    /// Start, event time ms (inclusive).
    public var start: Int64
    /// End, event time ms (exclusive).
    public var end: Int64
    /// `start` as RFC 3339.
    public var startTime: String
    /// `end` as RFC 3339.
    public var endTime: String

    /// Creates a window description.
    public init(name: String, start: Int64, end: Int64) {
        self.name = name
        self.start = start
        self.end = end
        startTime = DistillOutputTime.rfc3339(milliseconds: start)
        endTime = DistillOutputTime.rfc3339(milliseconds: end)
    }

    enum CodingKeys: String, CodingKey { case name, start, end, startTime = "start_time", endTime = "end_time" }
}

/// The temperature fit of a check.
public struct CalibrationCheckRecordFit: Sendable, Codable, Equatable {
    /// Fitted temperature T*.
    public var temperature: Double?
    /// Mean NLL at T*, nats.
    public var nll: Double?
    /// Mean NLL at T = 1, nats.
    public var nllAtOne: Double?
    /// Iterations used.
    public var iterations: Int
    /// True if the optimum was found inside the bounds.
    public var converged: Bool
    /// True if the optimum lies at a bound of the search range.
    public var atBound: Bool
    /// Labeled samples used.
    public var samples: Int

    /// The written form of a DistillCore fit.
    public init(_ f: TemperatureFit) {
        temperature = DistillOutputJSON.finite(f.temperature)
        nll = DistillOutputJSON.finite(f.negativeLogLikelihood)
        nllAtOne = DistillOutputJSON.finite(f.negativeLogLikelihoodAtOne)
        iterations = f.iterations
        converged = f.converged
        atBound = f.atBound
        samples = f.samples
    }

    enum CodingKeys: String, CodingKey {
        case temperature, nll, nllAtOne = "nll_at_one", iterations, converged, atBound = "at_bound", samples
    }

    /// Encodes every key, `null` for non-finite values.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeFinite(temperature, forKey: .temperature)
        try c.encodeFinite(nll, forKey: .nll)
        try c.encodeFinite(nllAtOne, forKey: .nllAtOne)
        try c.encode(iterations, forKey: .iterations)
        try c.encode(converged, forKey: .converged)
        try c.encode(atBound, forKey: .atBound)
        try c.encode(samples, forKey: .samples)
    }
}

/// One reliability-diagram bin of a check.
public struct CalibrationCheckRecordBin: Sendable, Codable, Equatable {
    /// Lower confidence edge.
    public var lower: Double?
    /// Upper confidence edge.
    public var upper: Double?
    /// Samples in the bin; nil only if not finite.
    public var count: Double?
    /// Mean top-1 confidence, nil for an empty bin.
    public var meanConfidence: Double?
    /// Accuracy, nil for an empty bin.
    public var accuracy: Double?

    /// The written form of a DistillCore bin (an empty bin's mean confidence and accuracy are `null`).
    public init(_ b: ReliabilityBin) {
        lower = DistillOutputJSON.finite(b.lower)
        upper = DistillOutputJSON.finite(b.upper)
        count = DistillOutputJSON.finite(b.count)
        meanConfidence = b.count > 0 ? DistillOutputJSON.finite(b.meanConfidence) : nil
        accuracy = b.count > 0 ? DistillOutputJSON.finite(b.accuracy) : nil
    }

    enum CodingKeys: String, CodingKey {
        case lower, upper, count, meanConfidence = "mean_confidence", accuracy
    }

    /// Encodes every key, `null` for undefined values.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeFinite(lower, forKey: .lower)
        try c.encodeFinite(upper, forKey: .upper)
        try c.encodeFinite(count, forKey: .count)
        try c.encodeFinite(meanConfidence, forKey: .meanConfidence)
        try c.encodeFinite(accuracy, forKey: .accuracy)
    }
}
