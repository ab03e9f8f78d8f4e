@testable import DistillCore
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

// MARK: - One million literals against the C library

/// Every number-parsing path of the decoder against `strtof` / `strtod` on about a million literals: the array
/// reader's inline fast path (`JSONScanner.scanFloat`), the reference path (`scanNumber` + `floatValue`) and
/// `scanNumber` + `doubleValue`. Literals are written straight into byte buffers (no String per literal) so
/// the run stays within seconds in a debug build.
@Suite("JSON number parsing against strtof/strtod, ~1M literals")
struct FloatParsingRandomTests {
    /// Where the literals come from.
    enum Kind: CaseIterable {
        /// Random decimal text: 1–25 digits, optional fraction and exponent (|e| ≤ 60, some ≤ 12).
        case digits
        /// Random Float bit patterns (subnormals included) in shortest form.
        case floatShortest
        /// The same Float values as shortest Double text (up to 17 digits, as Python writes float(f32)).
        case floatAsDouble
        /// Exact midpoints between neighbouring Floats and their Double neighbours (double-rounding traps).
        case floatMidpoint
        /// Random Double bit patterns (subnormals, |e| up to 308) in shortest form.
        case doubleShortest
        /// Long mantissas: 16–40 digits with a decimal point somewhere and |e| up to 330.
        case longMantissa
    }

    /// Appends one literal of `kind` to `out` (ASCII).
    static func literal(_ kind: Kind, _ rng: inout SeededRandom, into out: inout [UInt8]) {
        func append(_ s: String) { out.append(contentsOf: s.utf8) }
        func digit(_ nonzero: Bool) -> UInt8 { UInt8(48 + (nonzero ? 1 + rng.int(9) : rng.int(10))) }
        switch kind {
        case .digits, .longMantissa:
            let long = kind == .longMantissa
            if rng.bernoulli(0.5) { out.append(UInt8(ascii: "-")) }
            let intDigits = long ? 1 + rng.int(30) : 1 + rng.int(rng.bernoulli(0.7) ? 8 : 20)
            if !long && rng.bernoulli(0.15) {
                out.append(UInt8(ascii: "0"))
            } else {
                for i in 0..<intDigits { out.append(digit(i == 0)) }
            }
            if long || rng.bernoulli(0.6) {
                out.append(UInt8(ascii: "."))
                let n = long ? 1 + rng.int(25) : 1 + rng.int(rng.bernoulli(0.7) ? 8 : 20)
                let zeros = rng.bernoulli(0.2) ? rng.int(12) : 0
                for _ in 0..<zeros { out.append(UInt8(ascii: "0")) }
                for _ in 0..<n { out.append(digit(false)) }
            }
            if long || rng.bernoulli(0.6) {
                out.append(rng.bernoulli(0.5) ? UInt8(ascii: "e") : UInt8(ascii: "E"))
                let range = long ? 330 : (rng.bernoulli(0.3) ? 12 : 60)
                let e = rng.int(2 * range + 1) - range
                if e < 0 { out.append(UInt8(ascii: "-")) } else if rng.bernoulli(0.3) { out.append(UInt8(ascii: "+")) }
                append(String(abs(e)))
            }
        case .floatShortest, .floatAsDouble, .floatMidpoint:
            var f: Float
            repeat { f = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) } while !f.isFinite
            switch kind {
            case .floatShortest: append(f.description)
            case .floatAsDouble: append(Double(f).description)
            default:
                let next = f.sign == .minus ? f.nextDown : f.nextUp
                guard next.isFinite else { append(f.description); return }
                let mid = (Double(f) + Double(next)) / 2  // exact: a Float midpoint is a Double
                let pick = rng.int(3)
                append((pick == 0 ? mid : pick == 1 ? mid.nextDown : mid.nextUp).description)
            }
        case .doubleShortest:
            var d: Double
            repeat { d = Double(bitPattern: rng.next()) } while !d.isFinite
            append(d.description)
        }
    }

    /// Generates `count` literals of mixed kinds, each followed by a NUL (for strtof/strtod).
    static func corpus(count: Int, seed: UInt64, kinds: [Kind]) -> (bytes: [UInt8], ranges: [Range<Int>]) {
        var rng = SeededRandom(seed: seed)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * 24)
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(count + 16)
        for s in ["0", "-0", "0.0", "-0.0", "0e0", "-0e-5", "0e999999999", "-0.000e12"] {
            let start = bytes.count
            bytes.append(contentsOf: s.utf8)
            ranges.append(start..<bytes.count)
            bytes.append(0)
        }
        for i in 0..<count {
            let start = bytes.count
            literal(kinds[i % kinds.count], &rng, into: &bytes)
            ranges.append(start..<bytes.count)
            bytes.append(0)
        }
        return (bytes, ranges)
    }

    @Test("~700k literals: scanFloat and scanNumber + floatValue equal strtof bit for bit")
    func floatPathsMatchStrtof() {
        let (bytes, ranges) = Self.corpus(count: 700_000, seed: 0xF10A7,
                                          kinds: [.digits, .floatShortest, .floatAsDouble, .floatMidpoint,
                                                  .digits, .longMantissa, .floatShortest])
        var mismatches: [String] = []
        var fastPath = 0
        bytes.withUnsafeBufferPointer { buf in
            let base = buf.baseAddress!
            for r in ranges {
                let expected = strtof(UnsafeRawPointer(base + r.lowerBound).assumingMemoryBound(to: CChar.self), nil)
                var scanner = JSONScanner(base: base + r.lowerBound, count: r.count, maxDepth: 1)
                let fast = try? scanner.scanFloat("$")
                let fastComplete = scanner.pos == r.count
                var reference = JSONScanner(base: base + r.lowerBound, count: r.count, maxDepth: 1)
                let decimal = try? reference.scanNumber("$")
                let slow = decimal?.floatValue(in: base + r.lowerBound)
                if decimal?.truncated == false && (decimal?.digits ?? 99) <= 15 { fastPath += 1 }
                if fast?.bitPattern != expected.bitPattern || slow?.bitPattern != expected.bitPattern
                    || !fastComplete || reference.pos != r.count {
                    mismatches.append(String(decoding: UnsafeBufferPointer(rebasing: buf[r]), as: UTF8.self))
                }
            }
        }
        let mismatchCount = mismatches.count
        #expect(mismatchCount == 0, "first mismatches: \(mismatches.prefix(5))")
        // The corpus must exercise the fast tiers, not only the fallbacks.
        #expect(fastPath > ranges.count / 3)
    }

    @Test("~300k literals: scanNumber + doubleValue equals strtod bit for bit")
    func doublePathMatchesStrtod() {
        let (bytes, ranges) = Self.corpus(count: 300_000, seed: 0xD0B1E,
                                          kinds: [.doubleShortest, .digits, .longMantissa, .floatAsDouble])
        var mismatches: [String] = []
        bytes.withUnsafeBufferPointer { buf in
            let base = buf.baseAddress!
            for r in ranges {
                let expected = strtod(UnsafeRawPointer(base + r.lowerBound).assumingMemoryBound(to: CChar.self), nil)
                var scanner = JSONScanner(base: base + r.lowerBound, count: r.count, maxDepth: 1)
                let value = (try? scanner.scanNumber("$"))?.doubleValue(in: base + r.lowerBound)
                if value?.bitPattern != expected.bitPattern || scanner.pos != r.count {
                    mismatches.append(String(decoding: UnsafeBufferPointer(rebasing: buf[r]), as: UTF8.self))
                }
            }
        }
        let mismatchCount = mismatches.count
        #expect(mismatchCount == 0, "first mismatches: \(mismatches.prefix(5))")
    }

    @Test("decoded arrays equal strtof of every element, with whitespace and 8-byte digit runs at the record end")
    func decodedArraysMatchStrtof() throws {
        var rng = SeededRandom(seed: 11)
        let decoder = SampleDecoder(classes: 1)
        var sample = DistillSample(classes: 1)
        for record in 0..<400 {
            var literals: [[UInt8]] = []
            for i in 0..<(1 + rng.int(60)) {
                var lit: [UInt8] = []
                Self.literal(Kind.allCases[(record + i) % Kind.allCases.count], &rng, into: &lit)
                literals.append(lit)
            }
            // The features array comes last so that its final digits sit within 8 bytes of the record's end.
            var text = Array(#"{"id":"r","ts":1,"teachers":[{"version":"a","logits":[0]}],"features":["#.utf8)
            for (i, lit) in literals.enumerated() {
                if i > 0 { text.append(contentsOf: rng.bernoulli(0.2) ? Array(" ,\n".utf8) : [UInt8(ascii: ",")]) }
                text.append(contentsOf: lit)
            }
            text.append(contentsOf: Array((rng.bernoulli(0.5) ? "]}" : " ] }").utf8))
            let expected = literals.map { lit in
                (lit + [0]).withUnsafeBufferPointer { strtof(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(
                    to: CChar.self), nil) }
            }
            if expected.contains(where: { !$0.isFinite }) {
                #expect(throws: RecordError.self) { try decoder.decode(text, into: &sample) }
                continue
            }
            try decoder.decode(text, into: &sample)
            #expect(sample.features.map(\.bitPattern) == expected.map(\.bitPattern),
                    "record \(record): \(String(decoding: text, as: UTF8.self))")
        }
    }
}
