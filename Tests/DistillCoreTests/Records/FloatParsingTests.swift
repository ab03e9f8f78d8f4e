import DistillCore
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Float parsing against strtof / strtod

@Suite("JSON number parsing is correctly rounded")
struct FloatParsingTests {
    static func referenceFloat(_ s: String) -> Float { s.withCString { strtof($0, nil) } }
    static func referenceDouble(_ s: String) -> Double { s.withCString { strtod($0, nil) } }

    static let edgeCases: [String] = [
        "0", "-0", "0.0", "-0.0", "0e0", "-0e-5", "0e999999999", "1", "-1", "1e0", "1E+0", "1e-0",
        "16777216", "16777217", "16777218", "16777219", "9007199254740992", "9007199254740993",
        "1.4e-45", "1.401298464324817e-45", "7e-46", "7.1e-46", "7.006492321624085e-46", "1e-45", "2e-45",
        "1.1754942e-38", "1.17549435e-38", "1.1754943508222875e-38", "3.4028235e38", "3.4028234663852886e38",
        "3.40282357e38", "3.4028236e38", "4.9e-324", "5e-324", "2.4703282292062327e-324", "2.4703282292062328e-324",
        "2.2250738585072011e-308", "2.2250738585072014e-308", "1.7976931348623157e308", "1.7976931348623158e308",
        "1e308", "1e-400", "123456789012345678901234567890", "0.1", "0.2", "0.3", "0.30000000000000004",
        "3.14159265358979323846264338327950288", "2.718281828459045235360287", "1e22", "1e23", "9.999999999e22",
        "1e-22", "1e-23", "1234567e10", "1234567e-10", "12345678e10", "1e10", "1e11", "1e-10", "1e-11",
        "0.000000000000000000000000000000000000001", "100000000000000000000000000000000000000e-38",
        "8.589973e9", "8.589974e9", "0.5", "1.5", "2.5", "33554431", "33554433", "1.00000005960464477539062499",
        "1.000000059604644775390625", "1.00000005960464477539062501", "-2.5e-3", "7.038531e-26",
        "4.3e-310", "9.80908925027371e-45", "1.00000000000000011102230246251565404236316680908203125",
        // Exact Float midpoints and their neighbours (ties-to-even vs. one digit off).
        "1.00000005960464477539062500", "1.0000000596046447753906251", "1.0000000596046447753906249",
        "16777217.0", "16777217.000000001", "16777216.999999999", "0.100000001490116119384765625",
        "3.4028235677973366e38", "3.4028235677973362e38", "1.1754943157898259e-38", "7.0064923216240854e-46",
        "1.4012984643248171e-45", "2.1019476964872256e-45", "0.30000001192092896", "9999999.5", "8388608.5",
        "8388609.5", "1.5e-45", "1e-46", "1.17549421e-38",
    ]

    @Test("edge cases match strtof and strtod bit for bit")
    func edgeCasesMatch() {
        for s in Self.edgeCases {
            let f = parseJSONFloat(s)
            let d = parseJSONDouble(s)
            #expect(f?.bitPattern == Self.referenceFloat(s).bitPattern, "Float \(s)")
            #expect(d?.bitPattern == Self.referenceDouble(s).bitPattern, "Double \(s)")
        }
    }

    /// A random JSON number literal: 1–25 digits, optional fraction, optional exponent.
    static func randomLiteral(_ rng: inout SeededRandom, maxExponent: Int) -> String {
        var s = rng.bernoulli(0.5) ? "-" : ""
        let intDigits = 1 + rng.int(rng.bernoulli(0.7) ? 8 : 20)
        for i in 0..<intDigits {
            let d = i == 0 ? (intDigits == 1 ? rng.int(10) : 1 + rng.int(9)) : rng.int(10)
            s += String(d)
        }
        if rng.bernoulli(0.6) {
            s += "."
            for _ in 0..<(1 + rng.int(rng.bernoulli(0.7) ? 8 : 20)) { s += String(rng.int(10)) }
        }
        if rng.bernoulli(0.6) {
            s += rng.bernoulli(0.5) ? "e" : "E"
            let e = rng.int(2 * maxExponent + 1) - maxExponent
            s += e < 0 ? "-\(-e)" : (rng.bernoulli(0.3) ? "+\(e)" : "\(e)")
        }
        return s
    }

    @Test("120k random literals match strtof; 60k match strtod")
    func randomLiteralsMatch() {
        var rng = SeededRandom(seed: 42)
        var mismatches: [String] = []
        for i in 0..<120_000 {
            let s = Self.randomLiteral(&rng, maxExponent: i % 3 == 0 ? 12 : 50)
            if parseJSONFloat(s)?.bitPattern != Self.referenceFloat(s).bitPattern { mismatches.append(s) }
        }
        for i in 0..<60_000 {
            let s = Self.randomLiteral(&rng, maxExponent: i % 3 == 0 ? 25 : 330)
            if parseJSONDouble(s)?.bitPattern != Self.referenceDouble(s).bitPattern { mismatches.append("d:" + s) }
        }
        let mismatchCount = mismatches.count
        #expect(mismatchCount == 0, "first mismatches: \(mismatches.prefix(5))")
    }

    @Test("30k random Float bit patterns round-trip through shortest, 9-, 13- and 17-digit text")
    func randomBitPatternsRoundTrip() {
        var rng = SeededRandom(seed: 7)
        var bad: [String] = []
        var n = 0
        while n < 30_000 {
            let f = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            guard f.isFinite else { continue }
            n += 1
            // Shortest text, 9 digits (numpy float32), 13 digits, and 17 digits (Python's repr of float(f32)).
            for s in [f.description, String(format: "%.9g", Double(f)), String(format: "%.12e", Double(f)),
                      String(format: "%.17g", Double(f))] {
                guard let parsed = parseJSONFloat(s) else { bad.append("unparsed " + s); continue }
                if parsed.bitPattern != Self.referenceFloat(s).bitPattern || parsed.bitPattern != f.bitPattern {
                    bad.append(s)
                }
            }
        }
        let failureCount = bad.count
        #expect(failureCount == 0, "first failures: \(bad.prefix(5))")
    }

    @Test("non-JSON number text is rejected", arguments: ["", "-", "01", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN",
                                                         "Infinity", "1.5.2", " 1", "1 "])
    func rejectsNonJSON(_ s: String) {
        #expect(parseJSONFloat(s) == nil)
        #expect(parseJSONDouble(s) == nil)
    }
}
