import DistillCore
import DistillWire
import Foundation
import SwiftProtobuf

// MARK: - One record, written in either format

/// A sample record as its fields, absent ones nil, that can be written as JSON and as protobuf with the same
/// content: the tests change one field and expect both decoders to say the same thing.
struct WireRecord {
    struct Prediction {
        var version: String?
        var logits: [Float]?
    }

    var id: String? = "r"
    var ts: Int64? = 5
    var features: [Float]?
    var teachers: [Prediction]? = [Prediction(version: "v", logits: [1, 2, 3])]
    var student: Prediction?
    var label: Int64?
    var slice: String?

    /// The record from a decoded sample.
    init(_ s: DistillSample) {
        id = s.id
        ts = s.timestamp
        features = s.features.isEmpty ? nil : s.features
        teachers = s.teacherVersions.indices.map {
            Prediction(version: s.teacherVersions[$0], logits: s.teacherLogits(at: $0))
        }
        student = s.studentVersion.map { Prediction(version: $0, logits: s.studentLogits) }
        label = s.label.map(Int64.init)
        slice = s.slice
    }

    init() {}

    /// The JSON record, keys in schema order (NaN and ±Infinity written as the JSON decoder's error tokens).
    func json(extra: String? = nil) -> [UInt8] {
        var parts: [String] = []
        if let id { parts.append("\"id\":\(jsonString(id))") }
        if let ts { parts.append("\"ts\":\(ts)") }
        if let features { parts.append("\"features\":\(jsonFloats(features))") }
        func prediction(_ p: Prediction) -> String {
            var fields: [String] = []
            if let v = p.version { fields.append("\"version\":\(jsonString(v))") }
            if let l = p.logits { fields.append("\"logits\":\(jsonFloats(l))") }
            return "{" + fields.joined(separator: ",") + "}"
        }
        if let teachers { parts.append("\"teachers\":[" + teachers.map(prediction).joined(separator: ",") + "]") }
        if let student { parts.append("\"student\":" + prediction(student)) }
        if let label { parts.append("\"label\":\(label)") }
        if let slice { parts.append("\"slice\":\(jsonString(slice))") }
        if let extra { parts.append(extra) }
        return Array(("{" + parts.joined(separator: ",") + "}").utf8)
    }

    /// The `distill.v1.SampleRecord` message.
    var message: Distill_V1_SampleRecord {
        var m = Distill_V1_SampleRecord()
        if let id { m.id = id }
        if let ts { m.ts = ts }
        if let features { m.features = features }
        if let teachers {
            m.teachers = teachers.map { p in
                var t = Distill_V1_TeacherPrediction()
                if let v = p.version { t.version = v }
                if let l = p.logits { t.logits = l }
                return t
            }
        }
        if let student {
            var s = Distill_V1_StudentPrediction()
            if let v = student.version { s.version = v }
            if let l = student.logits { s.logits = l }
            m.student = s
        }
        if let label { m.label = label }
        if let slice { m.slice = slice }
        return m
    }

    /// The protobuf record.
    func protobuf() -> [UInt8] { ProtobufRecordEncoder.serialize(message) }
}

/// A JSON string literal: quotes, backslashes and control characters escaped, everything else as UTF-8.
func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}

/// A JSON array of floats, each in Swift's shortest round-trip form (`-0.0`, `1e-45`, `3.4028235e+38`).
func jsonFloats(_ values: [Float]) -> String {
    "[" + values.map { v in
        v.isNaN ? "NaN" : v == .infinity ? "Infinity" : v == -.infinity ? "-Infinity" : "\(v)"
    }.joined(separator: ",") + "]"
}

// MARK: - Bitwise comparison

/// Where two samples differ, comparing floats by bit pattern (so -0 ≠ +0), or nil when identical.
func bitwiseDifference(_ a: DistillSample, _ b: DistillSample) -> String? {
    func bits(_ v: [Float]) -> [UInt32] { v.map(\.bitPattern) }
    if a.id != b.id { return "id \(a.id) vs \(b.id)" }
    if a.timestamp != b.timestamp { return "ts \(a.timestamp) vs \(b.timestamp)" }
    if a.classes != b.classes { return "classes" }
    if bits(a.features) != bits(b.features) { return "features \(a.features) vs \(b.features)" }
    if a.teacherVersions != b.teacherVersions { return "teacher versions \(a.teacherVersions) vs \(b.teacherVersions)" }
    if bits(a.teacherLogits) != bits(b.teacherLogits) {
        return "teacher logits \(a.teacherLogits) vs \(b.teacherLogits)"
    }
    if a.studentVersion != b.studentVersion { return "student version" }
    if bits(a.studentLogits) != bits(b.studentLogits) {
        return "student logits \(a.studentLogits) vs \(b.studentLogits)"
    }
    if a.label != b.label { return "label \(String(describing: a.label)) vs \(String(describing: b.label))" }
    if a.slice != b.slice { return "slice \(String(describing: a.slice)) vs \(String(describing: b.slice))" }
    return nil
}

// MARK: - Random samples

/// Random valid samples with awkward content: edge floats (subnormals, -0, the largest finite values), ids with
/// escapes and non-ASCII, up to four teachers, optional features, student, label and slice (empty slices too).
struct RandomSamples {
    var rng: SplitMix

    init(seed: UInt64) { rng = SplitMix(seed: seed) }

    mutating func int(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
    mutating func chance(_ p: Double) -> Bool { rng.uniform() < p }

    /// A finite float: often ordinary, sometimes an edge value or any finite bit pattern.
    mutating func float() -> Float {
        switch int(10) {
        case 0:
            let edges: [Float] = [0, -0.0, .leastNonzeroMagnitude, -.leastNonzeroMagnitude, .leastNormalMagnitude,
                                  -.leastNormalMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
                                  Float.leastNormalMagnitude.nextDown, 1, -1, 0.1, 1e-38, 3.4e38]
            return edges[int(edges.count)]
        case 1:
            // A subnormal: exponent bits 0, random mantissa, random sign.
            return Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()) & 0x807F_FFFF)
        case 2:
            var v: Float
            repeat { v = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) } while !v.isFinite
            return v
        default:
            return Float(rng.normal() * 3)
        }
    }

    mutating func floats(_ n: Int) -> [Float] { (0..<n).map { _ in float() } }

    mutating func string(maxLength: Int, allowEmpty: Bool) -> String {
        let alphabet: [String] = ["a", "b", "Z", "0", "-", "_", ".", " ", "\"", "\\", "/", "\n", "\t", "\u{01}",
                                  "é", "ß", "中", "😀", "\u{7F}", "\u{2028}"]
        let n = allowEmpty ? int(maxLength + 1) : 1 + int(maxLength)
        return (0..<n).map { _ in alphabet[int(alphabet.count)] }.joined()
    }

    /// A valid sample for C = `classes` and D = `features` (nil: sometimes features of any length).
    mutating func sample(classes: Int, features: Int?) -> DistillSample {
        let teacherCount = 1 + int(4)
        var versions: [String] = []
        while versions.count < teacherCount {
            let v = "v" + string(maxLength: 6, allowEmpty: true)
            if !versions.contains(v) { versions.append(v) }
        }
        let featureValues: [Float]
        if let features {
            featureValues = chance(0.8) ? floats(features) : []
        } else {
            featureValues = chance(0.5) ? floats(1 + int(5)) : []
        }
        let student = chance(0.7) ? "s" + string(maxLength: 5, allowEmpty: true) : nil
        let timestamps: [Int64] = [0, 1, Int64.max, 1_795_430_000_000 + Int64(int(1_000_000)),
                                   Int64(truncatingIfNeeded: rng.next() >> 1)]
        return DistillSample(
            id: string(maxLength: 40, allowEmpty: false), timestamp: timestamps[int(timestamps.count)],
            classes: classes, features: featureValues, teacherVersions: versions,
            teacherLogits: floats(teacherCount * classes), studentVersion: student,
            studentLogits: student == nil ? [] : floats(classes), label: chance(0.5) ? int(classes) : nil,
            slice: chance(0.5) ? string(maxLength: 8, allowEmpty: true) : nil)
    }
}
