import DistillCore
import DistillWire
import Foundation

// MARK: - 1. Decoding

/// `SampleDecoder.decode(_:into:)` into one reused `DistillSample`, against Foundation's `JSONDecoder` decoding
/// the same bytes into an equivalent `Codable` struct (the baseline); then `ProtobufSampleDecoder` on the same
/// records written as protobuf, against `SampleDecoder`.
struct DecodeBenchmark {
    /// Issue 6: at least this many samples per second.
    static let targetRate = 350_000.0
    /// Issue 6: at least this many times `JSONDecoder`.
    static let targetRatio = 25.0

    /// The records to decode.
    let corpus: SampleCorpus

    /// Checks that both decoders agree on every record, then measures them. Returns the baseline first.
    func run(_ runner: BenchRunner, sink: inout UInt64) throws -> [Measurement] {
        let decoder = SampleDecoder(classes: SampleCorpus.classes, features: SampleCorpus.features)
        let foundation = JSONDecoder()
        for (bytes, data) in zip(corpus.records, corpus.data) {
            guard try foundation.decode(CodableSample.self, from: data).matches(try decoder.decode(bytes)) else {
                let text = String(decoding: bytes, as: UTF8.self)
                throw BenchFailure("SampleDecoder and JSONDecoder disagree on \(text)")
            }
        }

        var localSink = sink
        // JSONDecoder is ~30× slower: time it over a slice of the corpus so a pass stays short.
        let baselineData = corpus.data.prefix(Swift.max(16, corpus.data.count / 16))
        let baseline = runner.measure("decode", "JSONDecoder (Codable struct)") {
            for data in baselineData {
                let s = try! foundation.decode(CodableSample.self, from: data)
                BlackHole.consume(UInt64(bitPattern: s.ts) ^ UInt64(s.teachers[0].logits[0].bitPattern),
                                  into: &localSink)
            }
            return baselineData.count
        }

        var sample = DistillSample(classes: SampleCorpus.classes)
        let records = corpus.records
        var fast = runner.measure("decode", "SampleDecoder.decode(_:into:)") {
            for bytes in records {
                try! decoder.decode(bytes, into: &sample)
                BlackHole.consume(UInt64(bitPattern: sample.timestamp) ^ UInt64(sample.teacherLogits[0].bitPattern),
                                  into: &localSink)
            }
            return records.count
        }
        fast.compare(with: baseline)
        fast.notes.append(String(format: "record %.0f B mean", corpus.meanBytes))
        fast.notes.append(verdict("rate", fast.median, Self.targetRate, cpu: fast.cpuMedian))
        fast.notes.append(verdict("ratio", fast.ratio ?? 0, Self.targetRatio, cpu: fast.cpuRatio, ratio: true))

        // The same records as protobuf (`topics.formats: protobuf`): checked to decode to the same values first.
        let protobuf = ProtobufSampleDecoder(classes: SampleCorpus.classes, features: SampleCorpus.features)
        let protobufRecords = try records.map { ProtobufRecordEncoder.encode(try decoder.decode($0)) }
        for (json, bytes) in zip(records, protobufRecords) {
            guard try protobuf.decode(bytes) == decoder.decode(json) else {
                let text = String(decoding: json, as: UTF8.self)
                throw BenchFailure("ProtobufSampleDecoder and SampleDecoder disagree on \(text)")
            }
        }
        var binary = runner.measure("decode", "ProtobufSampleDecoder.decode(_:into:)") {
            for bytes in protobufRecords {
                try! protobuf.decode(bytes, into: &sample)
                BlackHole.consume(UInt64(bitPattern: sample.timestamp) ^ UInt64(sample.teacherLogits[0].bitPattern),
                                  into: &localSink)
            }
            return protobufRecords.count
        }
        binary.compare(with: fast)
        let protobufBytes = Double(protobufRecords.reduce(0) { $0 + $1.count }) / Double(max(1, protobufRecords.count))
        binary.notes.append(String(format: "record %.0f B mean (JSON %.0f B); ratio is to SampleDecoder on JSON",
                                   protobufBytes, corpus.meanBytes))
        sink = localSink
        return [baseline, fast, binary]
    }
}

/// A benchmark that cannot run (its inputs are inconsistent).
struct BenchFailure: Error, CustomStringConvertible {
    /// What went wrong.
    var description: String

    /// Creates a failure.
    init(_ description: String) { self.description = description }
}

/// "what target ≥ X: met" or "what target ≥ X: MISSED (Y % of target)", judged on the wall-clock `value`;
/// with `cpu`, the same percentage for the rate over thread CPU time is added.
func verdict(_ what: String, _ value: Double, _ target: Double, cpu: Double? = nil, ratio: Bool = false) -> String {
    let t = ratio ? String(format: "%.0f×", target) : formatRate(target)
    func percent(_ x: Double) -> String { String(format: "%.0f %%", 100 * x / target) }
    let cpuPart = cpu.map { "; cpu-time " + percent($0) } ?? ""
    if value >= target { return "\(what) target ≥ \(t): met (\(percent(value))\(cpuPart))" }
    return "\(what) target ≥ \(t): MISSED (\(percent(value)) of target\(cpuPart))"
}

/// A rate with thousands separators, e.g. `381,200`.
func formatRate(_ rate: Double) -> String {
    let n = Int(rate.rounded())
    var digits = Array(String(n))
    var out: [Character] = []
    while digits.count > 3 {
        out.insert(contentsOf: [","] + digits.suffix(3), at: 0)
        digits.removeLast(3)
    }
    return String(digits + out)
}
