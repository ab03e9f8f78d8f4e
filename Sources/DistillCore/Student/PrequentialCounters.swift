import Foundation

// MARK: - Running prequential counters

/// Simple running prequential ("test, then train") counters for one model: cumulative agreement with the
/// teacher, accuracy and ECE on labeled samples, and agreement over the last ``windowSize`` scored samples.
///
/// These are the student's own counters (for tests and the checkpoint's quick figures); the daemon's windows with
/// bootstrap intervals are fed from ``OnlineDistiller/lastEMALogits`` instead. ECE uses 10 equal-width confidence
/// bins: ECE = Σ_b (n_b/n)·|acc_b − conf_b|.
public struct PrequentialCounters: Sendable, Equatable {
    /// Samples that had a teacher target and were scored for agreement.
    public private(set) var comparedWithTeacher = 0
    /// Of those, samples whose argmax matched the teacher's.
    public private(set) var agreedWithTeacher = 0
    /// Labeled samples scored.
    public private(set) var labeled = 0
    /// Labeled samples predicted correctly.
    public private(set) var correct = 0
    /// Capacity of the recent-agreement window.
    public let windowSize: Int
    var window: [Bool]
    var windowNext = 0
    var windowFilled = 0
    var windowAgreed = 0
    var binCount = [Int](repeating: 0, count: 10)
    var binConfidence = [Double](repeating: 0, count: 10)
    var binCorrect = [Int](repeating: 0, count: 10)

    /// Creates empty counters with a recent-agreement window of `windowSize` (≥ 1) samples.
    public init(windowSize: Int) {
        precondition(windowSize >= 1, "window size must be ≥ 1")
        self.windowSize = windowSize
        window = [Bool](repeating: false, count: windowSize)
    }

    /// Records one scored sample: whether it agreed with the teacher (nil without a teacher), whether it was
    /// correct (nil without a label), and the model's top-class confidence.
    public mutating func add(agreesWithTeacher: Bool?, correct isCorrect: Bool?, confidence: Float) {
        if let a = agreesWithTeacher {
            comparedWithTeacher += 1
            if a { agreedWithTeacher += 1 }
            if windowFilled == windowSize, window[windowNext] { windowAgreed -= 1 }
            window[windowNext] = a
            if a { windowAgreed += 1 }
            windowNext = (windowNext + 1) % windowSize
            windowFilled = min(windowFilled + 1, windowSize)
        }
        if let isCorrect {
            labeled += 1
            if isCorrect { correct += 1 }
            let c = confidence.isFinite ? Double(confidence) : 0
            let b = min(max(Int(c * 10), 0), 9)
            binCount[b] += 1
            binConfidence[b] += c
            if isCorrect { binCorrect[b] += 1 }
        }
    }

    /// Cumulative agreement with the teacher (0 when nothing was compared).
    public var agreement: Double {
        comparedWithTeacher == 0 ? 0 : Double(agreedWithTeacher) / Double(comparedWithTeacher)
    }

    /// Agreement over the last `windowSize` compared samples (0 when empty).
    public var recentAgreement: Double { windowFilled == 0 ? 0 : Double(windowAgreed) / Double(windowFilled) }

    /// Number of samples in the recent window.
    public var recentCount: Int { windowFilled }

    /// Cumulative accuracy on labeled samples (0 when none).
    public var accuracy: Double { labeled == 0 ? 0 : Double(correct) / Double(labeled) }

    /// Cumulative 10-bin expected calibration error on labeled samples (0 when none).
    public var expectedCalibrationError: Double {
        guard labeled > 0 else { return 0 }
        var e = 0.0
        for b in 0..<10 where binCount[b] > 0 {
            let n = Double(binCount[b])
            e += n / Double(labeled) * abs(Double(binCorrect[b]) / n - binConfidence[b] / n)
        }
        return e
    }

    /// Wilson score interval for the recent-window agreement at normal quantile `z` (1.96 ≈ 95%).
    public func recentAgreementInterval(z: Double = 1.96) -> (lower: Double, upper: Double) {
        Self.wilson(successes: windowAgreed, trials: windowFilled, z: z)
    }

    /// Gate evidence from the recent window: agreement with its Wilson interval and the cumulative ECE (no ECE
    /// interval). A fallback for when the caller's bootstrap windows are not available; used by the tests.
    public func gateEvidence(z: Double = 1.96) -> GateEvidence {
        let interval = recentAgreementInterval(z: z)
        return GateEvidence(
            agreement: recentAgreement, agreementLower: interval.lower, agreementUpper: interval.upper,
            ece: labeled > 0 ? expectedCalibrationError : nil, sampleCount: windowFilled)
    }

    /// Wilson score interval for a binomial proportion; (0, 1) with no trials.
    public static func wilson(successes: Int, trials: Int, z: Double) -> (lower: Double, upper: Double) {
        guard trials > 0 else { return (0, 1) }
        let n = Double(trials)
        let p = Double(successes) / n
        let z2 = z * z
        let centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        let half = z / (1 + z2 / n) * (p * (1 - p) / n + z2 / (4 * n * n)).squareRoot()
        return (max(0, centre - half), min(1, centre + half))
    }
}
