import DistillCore
import Foundation
import Numerics
import Testing

// MARK: - Calibration checks

@Suite("Calibration checks")
struct CalibrationCheckTests {
    /// Feeds a calibration window with samples whose logits are `scale ×` those of a model calibrated at T = 1.
    func window(scale: Float, n: Int = 4000, seed: UInt64 = 1) throws -> CalibrationWindow {
        let config = DistillStatisticsConfig(classes: 4, replicates: 32, windows: [],
                                             calibrationWindows: [.count("cal", size: n, slide: n)])
        try config.validate()
        var set = DistillWindowSet(config: config)
        var rng = SeededRandom(seed: seed)
        var out: [CalibrationWindow] = []
        for i in 0..<n {
            let z = (0..<4).map { _ in Float(rng.normal() * 2) }
            let p = Reference.softmax(z)
            var u = rng.uniform(), y = 0
            while y < 3 && u >= p[y] { u -= p[y]; y += 1 }
            let s = DistillSample(id: "c\(i)", timestamp: Int64(i), classes: 4, teacherVersions: ["t1"],
                                  teacherLogits: z.map { $0 * scale }, label: y)
            set.ingest(s, groups: [])
            out += set.closeReady().calibration
        }
        return try #require(out.first)
    }

    @Test("a calibrated model is ok: T* ≈ deployed T = 1, small ECE, full evidence")
    func calibratedIsOK() throws {
        let w = try window(scale: 1)
        let checks = CalibrationCheck.checks(window: w, config: CalibrationCheckConfig(baselineECE: ["t1": 0.02]),
                                             deployedTemperature: { _ in 1.0 })
        let c = try #require(checks.first)
        #expect(checks.count == 1 && c.version == "t1" && c.role == .teacher)
        #expect(c.status == .ok, "\(c.reasons)")
        #expect(abs(try #require(c.fittedTemperature) - 1) < 0.1)
        #expect(try #require(c.ece).value < 0.03)
        #expect(c.bins.count == 15 && c.bins.reduce(0) { $0 + $1.count } == 4000)
        #expect(c.adaptiveECE != nil && c.mce != nil && c.nll != nil && c.brier != nil && c.classwiseECE != nil)
        #expect(c.deployedTemperature == 1)
    }

    @Test("an over-confident model drifts: T* departs from deployed T and ECE rises above baseline")
    func overconfidentDrifts() throws {
        let w = try window(scale: 2)   // logits doubled: true T* = 2
        let config = CalibrationCheckConfig(baselineECE: ["t1": 0.02])
        let checks = CalibrationCheck.checks(window: w, config: config, deployedTemperature: { _ in 1.0 })
        let c = try #require(checks.first)
        #expect(c.status == .drift)
        #expect(abs(try #require(c.fittedTemperature) - 2) < 0.2)
        #expect(c.reasons.count == 2, "\(c.reasons)")
        #expect(try #require(c.ece).value - 0.02 >= 0.01)
    }

    @Test("few samples give insufficient_data")
    func insufficient() throws {
        let w = try window(scale: 1, n: 100)
        let c = try #require(CalibrationCheck.checks(window: w, config: CalibrationCheckConfig()).first)
        #expect(c.status == .insufficientData)
    }

    @Test("config validation")
    func validation() {
        #expect(throws: DistillConfigError.self) { try CalibrationCheckConfig(temperatureTolerance: 0).validate() }
        #expect(throws: DistillConfigError.self) { try CalibrationCheckConfig(baselineECE: ["v": 2]).validate() }
    }
}
