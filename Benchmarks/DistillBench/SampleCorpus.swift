import DistillCore
import Foundation

// MARK: - Generated records

/// Deterministic SplitMix64 generator (Steele, Lea & Flood 2014), so every run benchmarks the same bytes.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    /// Creates a generator from `seed`.
    init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal draw (Box–Muller).
    mutating func gaussian() -> Double {
        let u = Double.random(in: Double.ulpOfOne..<1, using: &self)
        let v = Double.random(in: 0..<1, using: &self)
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }
}

/// N distinct sample records in the wire format, as a producer would write them: 64 features, three teachers
/// and one student with C = 16 logits each, id, event time, label and slice (about 1.3 KB each).
struct SampleCorpus {
    /// Feature dimension D.
    static let features = 64
    /// Number of classes C.
    static let classes = 16
    /// Teacher versions on every record, newest first.
    static let teacherVersions = ["ranker-v12", "ranker-v11", "ranker-v10"]
    /// The served student version.
    static let studentVersion = "student-v12.3"
    /// Traffic slices, drawn with weights 4:3:2:1.
    static let slices = ["web", "ios", "android", "partner-api"]
    /// Event time of the first record, ms (2026-11-23T00:00:00Z).
    static let startTime: Int64 = 1_795_392_000_000

    /// The records' UTF-8 bytes.
    let records: [[UInt8]]
    /// The same bytes as `Data`, for Foundation's decoder.
    let data: [Data]

    /// Generates `count` records from `seed`.
    init(count: Int, seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        var records: [[UInt8]] = []
        records.reserveCapacity(count)
        for i in 0..<count { records.append(Array(Self.record(i, &rng).utf8)) }
        self.records = records
        self.data = records.map { Data($0) }
    }

    /// Mean record size in bytes.
    var meanBytes: Double { Double(records.reduce(0) { $0 + $1.count }) / Double(records.count) }

    /// One record. Features are standardised values with 3 decimals (as a feature store writes them); logits
    /// are Float values in their shortest round-trip form (as a Swift, Java or Go producer writes a float32).
    static func record(_ index: Int, _ rng: inout SeededGenerator) -> String {
        let c = classes
        let label = Int.random(in: 0..<c, using: &rng)
        // A shared signal so that teachers, student and label mostly agree, as in real traffic.
        let signal = (0..<c).map { k in (k == label ? 2.5 : 0) + rng.gaussian() }
        func logits(noise: Double) -> String {
            "[" + signal.map { "\(Float($0 + noise * rng.gaussian()))" }.joined(separator: ",") + "]"
        }
        let features = (0..<Self.features).map { _ in String(format: "%.3f", rng.gaussian()) }
        let teachers = teacherVersions.enumerated().map { t, v in
            "{\"version\":\"\(v)\",\"logits\":\(logits(noise: 0.3 + 0.2 * Double(t)))}"
        }
        let pick = Int.random(in: 0..<10, using: &rng)
        let slice = slices[pick < 4 ? 0 : pick < 7 ? 1 : pick < 9 ? 2 : 3]
        let id = String(format: "r%07x%012llx", index, rng.next() >> 16)
        let ts = startTime + Int64(index)
        return "{\"id\":\"\(id)\",\"ts\":\(ts),\"features\":[\(features.joined(separator: ","))],"
            + "\"teachers\":[\(teachers.joined(separator: ","))],"
            + "\"student\":{\"version\":\"\(studentVersion)\",\"logits\":\(logits(noise: 0.8))},"
            + "\"label\":\(label),\"slice\":\"\(slice)\"}"
    }

    /// Decodes every record with `SampleDecoder` (setup for the benchmarks that start from decoded samples).
    func decodedSamples() throws -> [DistillSample] {
        let decoder = SampleDecoder(classes: Self.classes, features: Self.features)
        return try records.map { try decoder.decode($0) }
    }
}

// MARK: - The Codable baseline

/// The same record as a plain `Codable` struct, for Foundation's `JSONDecoder` (the decode baseline).
struct CodableSample: Codable, Equatable {
    /// A teacher's or the student's entry.
    struct Model: Codable, Equatable {
        /// Model version.
        var version: String
        /// Raw logits (C values).
        var logits: [Float]
    }

    /// Request id.
    var id: String
    /// Event time, ms.
    var ts: Int64
    /// Student input vector.
    var features: [Float]?
    /// Teacher entries.
    var teachers: [Model]
    /// Served student entry.
    var student: Model?
    /// Ground-truth class.
    var label: Int?
    /// Traffic slice.
    var slice: String?

    /// True if `sample` holds the same values (checks that both decoders agree before timing them).
    func matches(_ sample: DistillSample) -> Bool {
        id == sample.id && ts == sample.timestamp && (features ?? []) == sample.features
            && teachers.map(\.version) == sample.teacherVersions
            && teachers.flatMap(\.logits) == sample.teacherLogits
            && student?.version == sample.studentVersion && (student?.logits ?? []) == sample.studentLogits
            && label == sample.label && slice == sample.slice
    }
}
