import DistillCore
import DistillWire
import Foundation

// MARK: - SyntheticStream

/// A deterministic stream of sample records in the wire format (`streams/schemas/sample.schema.json`), generated
/// fast enough to feed the pipeline at full speed; or the same records in the protobuf format
/// (`proto/distill/v1/records.proto`), which decode to the same values.
///
/// A pool of record bodies (features, every teacher's logits, the served student's logits, the slice) is generated
/// once; sample `i` is body `i mod pool` with its own id (`b` + 12 hex digits of `i`), event time
/// `start + i / eventRate` and label decision. Features are standardised values with 3 decimals; logits share a
/// class signal with the label, so teachers, student and label mostly agree as in real traffic, and each newer
/// teacher adds a little noise, so teacher KL drift is small but not zero.
public struct SyntheticStream: Sendable {
    /// The shape of the records.
    public struct Shape: Sendable, Equatable {
        public var features: Int
        public var classes: Int
        public var teacherVersions: Int
        public var slices: Int
        public var labelRate: Double
        public var lateLabelShare: Double
        /// Samples per second of event time.
        public var eventRate: Double

        /// The shape `options` describe.
        public init(_ options: BenchOptions) {
            features = options.features
            classes = options.classes
            teacherVersions = options.teacherVersions
            slices = options.slices
            labelRate = options.labelRate
            lateLabelShare = options.lateLabelShare
            eventRate = options.eventRate
        }
    }

    /// What becomes of a sample's label.
    public enum LabelFate: Sendable, Equatable {
        case none
        case inline
        /// Sent on the `labels` topic after the sample.
        case late(Int)
    }

    /// Event time of sample 0, ms (2026-11-23T00:00:00Z).
    public static let startTime: Int64 = 1_795_392_000_000
    /// The served student version on every record.
    public static let studentVersion = "student-s1"
    /// Distinct record bodies.
    static let poolSize = 2048

    public let shape: Shape
    /// Teacher versions, oldest first (`teacher-v1` …).
    public let teacherVersionNames: [String]
    /// Slice names.
    public let sliceNames: [String]
    /// Class names (`c00` …); the last one is the rare class.
    public let classNames: [String]
    private let bodies: [[UInt8]]
    /// The same bodies as serialized `distill.v1.SampleRecord` fields (features, teachers, student, slice).
    private let protobufBodies: [[UInt8]]
    private let labels: [Int]
    private let seed: UInt64

    /// Generates the pool of bodies from `seed`.
    public init(shape: Shape, seed: UInt64) {
        self.shape = shape
        self.seed = seed
        teacherVersionNames = (1...shape.teacherVersions).map { "teacher-v\($0)" }
        sliceNames = (0..<shape.slices).map { ["web", "ios", "android", "partner-api"].indices.contains($0)
            ? ["web", "ios", "android", "partner-api"][$0] : "slice-\($0)" }
        classNames = (0..<shape.classes).map { String(format: "c%02d", $0) }
        var rng = SplitMix64(seed: seed)
        var bodies: [[UInt8]] = []
        var labels: [Int] = []
        for _ in 0..<Self.poolSize {
            let (body, label) = Self.body(shape, teachers: teacherVersionNames, slices: sliceNames, &rng)
            bodies.append(Array(body.utf8))
            labels.append(label)
        }
        self.bodies = bodies
        self.labels = labels
        // Protobuf bodies: each JSON body decoded and written again, so both formats carry the same values.
        let decoder = SampleDecoder(classes: shape.classes, features: shape.features)
        protobufBodies = bodies.map { body in
            let record = Array(#"{"id":"x","ts":0,"#.utf8) + body + [UInt8(ascii: "}")]
            var message = ProtobufRecordEncoder.message(try! decoder.decode(record))
            message.clearID()
            message.clearTs()
            return ProtobufRecordEncoder.serialize(message)
        }
    }

    /// Mean record size in bytes (with id, time and label) in `format`.
    public func meanRecordBytes(_ format: RecordFormat = .json) -> Double {
        var buffer: [UInt8] = []
        var total = 0
        for i in 0..<Self.poolSize {
            buffer.removeAll(keepingCapacity: true)
            _ = sample(i, format: format, into: &buffer)
            total += buffer.count
        }
        return Double(total) / Double(Self.poolSize)
    }

    /// Event time of sample `i`, ms.
    public func timestamp(_ i: Int) -> Int64 { Self.startTime + Int64(Double(i) * 1000 / shape.eventRate) }

    /// Writes sample `i`'s id into `buffer`: `b` and 12 hex digits.
    public static func id(_ i: Int, into buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "b"))
        let hex = Array("0123456789abcdef".utf8)
        for shift in stride(from: 44, through: 0, by: -4) { buffer.append(hex[(i >> shift) & 15]) }
    }

    /// Sample `i`'s id as key bytes.
    public static func key(_ i: Int) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(13)
        id(i, into: &key)
        return key
    }

    /// Appends sample `i`'s record in `format` to `buffer` and tells what becomes of its label.
    public func sample(_ i: Int, format: RecordFormat = .json, into buffer: inout [UInt8]) -> LabelFate {
        let label = labels[i % Self.poolSize]
        var h = SplitMix64(seed: seed ^ UInt64(truncatingIfNeeded: i) &* 0x2545_F491_4F6C_DD1D)
        let u = Double(h.next() >> 11) / Double(1 << 53)
        let v = Double(h.next() >> 11) / Double(1 << 53)
        let fate: LabelFate = u >= shape.labelRate ? .none : v < shape.lateLabelShare ? .late(label) : .inline
        if format == .protobuf {
            // id, ts and an inline label, then the body's fields: protobuf fields may come in any order.
            var head = Distill_V1_SampleRecord()
            var id: [UInt8] = []
            Self.id(i, into: &id)
            head.id = String(decoding: id, as: UTF8.self)
            head.ts = timestamp(i)
            if fate == .inline { head.label = Int64(label) }
            buffer.append(contentsOf: ProtobufRecordEncoder.serialize(head))
            buffer.append(contentsOf: protobufBodies[i % Self.poolSize])
            return fate
        }
        let body = bodies[i % Self.poolSize]
        buffer.append(contentsOf: #"{"id":""#.utf8)
        Self.id(i, into: &buffer)
        buffer.append(contentsOf: #"","ts":"#.utf8)
        buffer.append(contentsOf: String(timestamp(i)).utf8)
        buffer.append(UInt8(ascii: ","))
        buffer.append(contentsOf: body)
        if fate == .inline {
            buffer.append(contentsOf: #","label":"#.utf8)
            buffer.append(contentsOf: String(label).utf8)
        }
        buffer.append(UInt8(ascii: "}"))
        return fate
    }

    /// A late label record for sample `i` (`streams/schemas/label.schema.json`, or a `distill.v1.LabelRecord`), a
    /// little after its sample.
    public func lateLabel(_ i: Int, label: Int, format: RecordFormat = .json) -> [UInt8] {
        if format == .protobuf {
            return ProtobufRecordEncoder.encode(LabelRecord(
                id: String(decoding: Self.key(i), as: UTF8.self), label: label, timestamp: timestamp(i) + 30_000))
        }
        var buffer = Array(#"{"id":""#.utf8)
        Self.id(i, into: &buffer)
        buffer.append(contentsOf: "\",\"label\":\(label),\"ts\":\(timestamp(i) + 30_000)}".utf8)
        return buffer
    }

    /// The registry records of the teacher versions (`streams/schemas/teacher.schema.json`): all active, one major
    /// version, created a day apart before the stream starts. Keyed by version.
    public func teacherRecords() -> [(key: String, value: [UInt8])] {
        teacherVersionNames.enumerated().map { n, version in
            let created = Self.startTime - Int64(teacherVersionNames.count - n) * 86_400_000
            let json = "{\"version\":\"\(version)\",\"major\":1,\"created_at\":\(created),"
                + "\"accuracy\":\(0.9 + 0.001 * Double(n)),\"ece\":0.02,\"temperature\":1.0,"
                + "\"data_hash\":\"sha256:bench-\(n + 1)\",\"status\":\"active\"}"
            return (version, Array(json.utf8))
        }
    }

    /// One body (everything after the id and time) and its label.
    private static func body(
        _ shape: Shape, teachers: [String], slices: [String], _ rng: inout SplitMix64
    ) -> (String, Int) {
        let c = shape.classes
        let label = Int(rng.next() % UInt64(c))
        let signal = (0..<c).map { k in (k == label ? 2.5 : 0) + rng.gaussian() }
        func logits(noise: Double) -> String {
            "[" + signal.map { "\(Float($0 + noise * rng.gaussian()))" }.joined(separator: ",") + "]"
        }
        let features = (0..<shape.features).map { _ in String(format: "%.3f", rng.gaussian()) }
        let teacherEntries = teachers.enumerated().map { t, v in
            "{\"version\":\"\(v)\",\"logits\":\(logits(noise: 0.3 + 0.1 * Double(teachers.count - 1 - t)))}"
        }
        // Skewed slices: weights n, n-1, …, 1.
        let total = slices.count * (slices.count + 1) / 2
        var pick = Int(rng.next() % UInt64(total))
        var slice = slices[0]
        for (k, name) in slices.enumerated() {
            let weight = slices.count - k
            if pick < weight { slice = name; break }
            pick -= weight
        }
        let body = "\"features\":[\(features.joined(separator: ","))],"
            + "\"teachers\":[\(teacherEntries.joined(separator: ","))],"
            + "\"student\":{\"version\":\"\(studentVersion)\",\"logits\":\(logits(noise: 0.8))},"
            + "\"slice\":\"\(slice)\""
        return (body, label)
    }
}

// MARK: - Probe records

/// A record the benchmark puts into the `samples` partitions between samples. It is not a valid sample, so the
/// pipeline dead-letters it with its bytes untouched; since a partition is processed in order, its dead letter
/// proves that every sample before it in its partition has been processed. It carries the producer's clock.
public struct BenchProbe: Sendable, Equatable {
    /// Samples produced (in the whole topic) before this probe.
    public var producedBefore: Int
    /// The partition it was sent to.
    public var partition: Int32
    /// `DispatchTime.now().uptimeNanoseconds` when it was handed to the producer.
    public var sentNanos: UInt64
    /// Sent after the last sample of a phase, to every partition.
    public var isEnd: Bool
    /// Sent in the latency phase (its latency is recorded).
    public var timed: Bool

    static let prefix = Array(#"{"bench_probe":"#.utf8)

    /// The record bytes.
    public var bytes: [UInt8] {
        Array(("{\"bench_probe\":\(producedBefore),\"p\":\(partition),\"ns\":\(sentNanos),"
               + "\"end\":\(isEnd),\"timed\":\(timed)}").utf8)
    }

    /// Parses probe bytes; nil for anything else (a sample).
    public init?(_ bytes: [UInt8]) {
        guard bytes.count > Self.prefix.count, bytes.starts(with: Self.prefix),
              let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let produced = (object["bench_probe"] as? NSNumber)?.intValue,
              let p = (object["p"] as? NSNumber)?.int32Value,
              let ns = (object["ns"] as? NSNumber)?.uint64Value else { return nil }
        self.init(producedBefore: produced, partition: p, sentNanos: ns,
                  isEnd: object["end"] as? Bool ?? false, timed: object["timed"] as? Bool ?? false)
    }

    /// Creates a probe.
    public init(producedBefore: Int, partition: Int32, sentNanos: UInt64, isEnd: Bool, timed: Bool) {
        self.producedBefore = producedBefore
        self.partition = partition
        self.sentNanos = sentNanos
        self.isEnd = isEnd
        self.timed = timed
    }

    /// True if `bytes` start like a probe (cheap check for the consume loops).
    static func looksLikeProbe(_ bytes: [UInt8]) -> Bool { bytes.starts(with: prefix) }
}

// MARK: - The Codable baseline

/// The sample record as a plain `Codable` struct, for Foundation's `JSONDecoder` (the decode baseline).
struct CodableSampleRecord: Codable {
    struct Model: Codable {
        var version: String
        var logits: [Float]
    }

    var id: String
    var ts: Int64
    var features: [Float]?
    var teachers: [Model]
    var student: Model?
    var label: Int?
    var slice: String?
}

// MARK: - SplitMix64

/// Deterministic SplitMix64 generator (Steele, Lea & Flood 2014): every run generates the same stream.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

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
