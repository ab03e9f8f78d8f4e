import Foundation

// MARK: - Calibration checks

/// Settings of the per-version calibration checks.
public struct CalibrationCheckConfig: Sendable, Codable, Equatable {
    /// `drift` when ECE − baseline ECE ≥ this (default 0.01).
    public var eceDriftThreshold: Double
    /// `drift` when |T* − T_deployed| / T_deployed exceeds this (default 0.15, i.e. 15 %).
    public var temperatureTolerance: Double
    /// Fewest labeled samples for a status other than `insufficient_data` (default 500).
    public var minSamples: Int
    /// `significant`: the ECE drift needs the lower interval end past the threshold; `point` (default): the
    /// point value.
    public var mode: TriggerMode
    /// Search range of the temperature fit (default 0.05...20).
    public var temperatureRange: ClosedRange<Double>
    /// Pinned baseline ECE per model version; versions without one are compared with nothing for ECE.
    public var baselineECE: [String: Double]

    /// Creates a configuration with the documented defaults.
    public init(eceDriftThreshold: Double = 0.01, temperatureTolerance: Double = 0.15, minSamples: Int = 500,
                mode: TriggerMode = .point, temperatureRange: ClosedRange<Double> = 0.05...20,
                baselineECE: [String: Double] = [:]) {
        self.eceDriftThreshold = eceDriftThreshold
        self.temperatureTolerance = temperatureTolerance
        self.minSamples = minSamples
        self.mode = mode
        self.temperatureRange = temperatureRange
        self.baselineECE = baselineECE
    }

    /// Checks every setting.
    public func validate() throws(DistillConfigError) {
        if !(eceDriftThreshold > 0) {
            throw DistillConfigError(setting: "calibration.ece_drift_threshold", message: "must be > 0")
        }
        if !(temperatureTolerance > 0) {
            throw DistillConfigError(setting: "calibration.temperature_tolerance", message: "must be > 0")
        }
        if minSamples < 1 { throw DistillConfigError(setting: "calibration.min_samples", message: "must be >= 1") }
        if !(temperatureRange.lowerBound > 0) || !temperatureRange.upperBound.isFinite {
            throw DistillConfigError(setting: "calibration.temperature_range", message: "must be positive and finite")
        }
        for (v, e) in baselineECE where !(e >= 0 && e <= 1) {
            throw DistillConfigError(setting: "calibration.baseline_ece.\(v)", message: "must be in [0, 1]")
        }
    }
}

/// The calibration check of one model version at the close of a calibration window.
public struct CalibrationCheck: Sendable, Codable, Equatable {
    /// Outcome.
    public enum Status: String, Sendable, Codable {
        /// Within tolerance.
        case ok
        /// ECE above baseline by the threshold, or T* away from the deployed T beyond tolerance.
        case drift
        /// Fewer labeled samples than `minSamples`.
        case insufficientData = "insufficient_data"
    }

    /// Model version.
    public var version: String
    /// Teacher or student.
    public var role: CalibrationKey.Role
    /// Slice, nil for pooled.
    public var slice: String?
    /// Window name.
    public var window: String
    /// Window start, event time ms.
    public var windowStart: Int64
    /// Window end, event time ms (exclusive).
    public var windowEnd: Int64
    /// Labeled samples.
    public var samples: Double
    /// Top-1 accuracy.
    public var accuracy: BootstrapEstimate?
    /// 15-bin ECE with interval.
    public var ece: BootstrapEstimate?
    /// Equal-mass ECE.
    public var adaptiveECE: Double?
    /// Class-wise ECE.
    public var classwiseECE: Double?
    /// Maximum calibration error.
    public var mce: Double?
    /// Mean NLL, nats.
    public var nll: BootstrapEstimate?
    /// Mean Brier score.
    public var brier: BootstrapEstimate?
    /// Fitted temperature T*.
    public var fittedTemperature: Double?
    /// Details of the fit.
    public var temperatureFit: TemperatureFit?
    /// Deployed temperature from the registry.
    public var deployedTemperature: Double?
    /// Reliability bins.
    public var bins: [ReliabilityBin]
    /// Baseline ECE compared against.
    public var baselineECE: Double?
    /// Status.
    public var status: Status
    /// Why the status is what it is.
    public var reasons: [String]

    /// Builds the check from a window's summary.
    public init(key: CalibrationKey, window: String, start: Int64, end: Int64, summary: CalibrationSummary,
                deployedTemperature: Double?, baselineECE: Double?, config: CalibrationCheckConfig) {
        self.version = key.version
        self.role = key.role
        self.slice = key.slice
        self.window = window
        self.windowStart = start
        self.windowEnd = end
        self.samples = summary.samples
        self.accuracy = summary.accuracy
        self.ece = summary.ece
        self.adaptiveECE = summary.adaptiveECE
        self.classwiseECE = summary.classwiseECE
        self.mce = summary.mce
        self.nll = summary.nll
        self.brier = summary.brier
        self.temperatureFit = summary.fittedTemperature
        self.fittedTemperature = summary.fittedTemperature?.temperature
        self.deployedTemperature = deployedTemperature
        self.bins = summary.bins
        self.baselineECE = baselineECE
        var reasons: [String] = []
        if summary.samples < Double(config.minSamples) {
            self.status = .insufficientData
            reasons.append("\(Int(summary.samples)) labeled samples < min_samples \(config.minSamples)")
            self.reasons = reasons
            return
        }
        if let base = baselineECE, let e = summary.ece {
            let x = config.mode == .significant ? e.lower : e.value
            if x - base >= config.eceDriftThreshold {
                reasons.append("ECE \(x) − baseline \(base) ≥ \(config.eceDriftThreshold)")
            }
        }
        if let t = summary.fittedTemperature?.temperature, let d = deployedTemperature, d > 0 {
            if abs(t - d) / d > config.temperatureTolerance {
                reasons.append(
                    "T* \(t) departs from deployed T \(d) by more than \(config.temperatureTolerance * 100) %")
            }
        }
        self.status = reasons.isEmpty ? .ok : .drift
        if reasons.isEmpty { reasons.append("within tolerance") }
        self.reasons = reasons
    }

    /// Checks for every model version of a closed calibration window, in a stable order.
    /// `deployedTemperature` maps a version to its registry temperature (nil if unknown).
    public static func checks(window: CalibrationWindow, config: CalibrationCheckConfig, level: Double = 0.95,
                              deployedTemperature: (String) -> Double? = { _ in nil }) -> [CalibrationCheck] {
        window.groups.keys.sorted { $0.description < $1.description }.map { key in
            let summary = window.groups[key]!.summary(level: level, temperatureRange: config.temperatureRange)
            return CalibrationCheck(key: key, window: window.name, start: window.start, end: window.end,
                                    summary: summary, deployedTemperature: deployedTemperature(key.version),
                                    baselineECE: config.baselineECE[key.version], config: config)
        }
    }
}
