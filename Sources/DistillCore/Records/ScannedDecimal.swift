#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Correctly rounded decimal → binary conversion
//
// A JSON number is scanned once into (sign, decimal significand m, exponent e) with value ±m·10^e.
// Exact fast path (Clinger 1990): if m and 10^|e| are both exactly representable, one IEEE multiply
// or divide rounds correctly. Float: m < 10^7 < 2^24 and |e| ≤ 10 (5^10 < 2^24). Double: m < 10^15 < 2^53
// and |e| ≤ 22. Float fields also have a guarded Double tier (see `floatValue`) that accepts a Double
// intermediate only when double rounding provably cannot change the result. Everything else falls back to
// strtof/strtod on a NUL-terminated stack copy written as "±DIGITSeEXP" without a decimal point, so the C
// locale's decimal separator cannot matter. Float fields are never naively parsed through Double.

/// The decimal form of one scanned JSON number.
struct ScannedDecimal {
    /// Byte offset of the first character (the sign or first digit).
    var start: Int
    /// Byte offset one past the last character.
    var end: Int
    /// True for a leading '-'.
    var negative: Bool
    /// Up to 19 significant decimal digits.
    var significand: UInt64
    /// Number of significant digits accumulated in `significand`.
    var digits: Int
    /// True if more than 19 significant digits were present (fast paths are then invalid).
    var truncated: Bool
    /// Decimal exponent applied to `significand` (saturated to ±1e9).
    var exponent: Int
    /// True if the literal had no fraction and no exponent part.
    var isIntegerLiteral: Bool
}

/// 10^e for 0 ≤ e ≤ 10, exact in Float (a switch, so no lazy-global access on the hot path).
@inline(__always)
func powerOfTenFloat(_ e: Int) -> Float {
    switch e {
    case 0: return 1
    case 1: return 1e1
    case 2: return 1e2
    case 3: return 1e3
    case 4: return 1e4
    case 5: return 1e5
    case 6: return 1e6
    case 7: return 1e7
    case 8: return 1e8
    case 9: return 1e9
    default: return 1e10
    }
}

/// 10^e for 1 ≤ e ≤ 8 as an integer.
@inline(__always)
func powerOfTenUInt64(_ e: Int) -> UInt64 {
    switch e {
    case 1: return 10
    case 2: return 100
    case 3: return 1000
    case 4: return 10000
    case 5: return 100_000
    case 6: return 1_000_000
    case 7: return 10_000_000
    default: return 100_000_000
    }
}

/// 10^e for 0 ≤ e ≤ 22, exact in Double.
@inline(__always)
func powerOfTenDouble(_ e: Int) -> Double {
    switch e {
    case 0: return 1
    case 1: return 1e1
    case 2: return 1e2
    case 3: return 1e3
    case 4: return 1e4
    case 5: return 1e5
    case 6: return 1e6
    case 7: return 1e7
    case 8: return 1e8
    case 9: return 1e9
    case 10: return 1e10
    case 11: return 1e11
    case 12: return 1e12
    case 13: return 1e13
    case 14: return 1e14
    case 15: return 1e15
    case 16: return 1e16
    case 17: return 1e17
    case 18: return 1e18
    case 19: return 1e19
    case 20: return 1e20
    case 21: return 1e21
    default: return 1e22
    }
}

extension ScannedDecimal {
    /// The correctly rounded Float (identical to `strtof`). May be ±infinity on overflow.
    ///
    /// Tiers, each exact: (1) Clinger in Float: m ≤ 7 digits (< 2^24) and |e| ≤ 10, one Float operation;
    /// (2) m ≤ 15 digits (< 2^53) and |e| ≤ 22: d = m ×/÷ 10^|e| is one Double operation on exact operands,
    /// so d is x correctly rounded to Double. Rounding d to Float then gives x rounded to Float unless d is
    /// exactly a Float rounding midpoint (Double rounding is monotone and every midpoint of the Float grid is a
    /// Double: x and d lie strictly between the same two midpoints). d ∈ [1e-22, 1e37] is inside Float's normal
    /// range, where a midpoint is a Double whose 29 low significand bits are 1 followed by 28 zeros. Midpoints
    /// and everything else go to `floatValueSlow`.
    @inline(__always)
    func floatValue(in base: UnsafePointer<UInt8>) -> Float {
        if !truncated {
            if significand == 0 { return negative ? -0.0 : 0.0 }
            if digits <= 7 && exponent >= -10 && exponent <= 10 {
                var v = Float(significand)
                if exponent < 0 { v /= powerOfTenFloat(-exponent) } else { v *= powerOfTenFloat(exponent) }
                return negative ? -v : v
            }
            if digits <= 15 && exponent >= -22 && exponent <= 22 {
                var d = Double(significand)
                if exponent < 0 { d /= powerOfTenDouble(-exponent) } else { d *= powerOfTenDouble(exponent) }
                if d.bitPattern & 0x1FFF_FFFF != 0x1000_0000 {
                    let f = Float(d)
                    return negative ? -f : f
                }
            }
        }
        return floatValueSlow(in: base)
    }

    /// `floatValue` beyond the fast tiers: (3) up to 19 digits and |e| ≤ 22: d = m ×/÷ 10^|e| in Double
    /// (at most two roundings, |d − x| ≤ 1.01 ulp(d)), then Float(d) — accepted only if d is farther than
    /// 2 ulp(d) from both Float rounding midpoints around Float(d), so no midpoint can separate d from the
    /// true value x and one rounding of x gives the same Float; (4) otherwise `strtof`.
    @inline(never)
    func floatValueSlow(in base: UnsafePointer<UInt8>) -> Float {
        if significand == 0 && !truncated { return negative ? -0.0 : 0.0 }
        if !truncated {
            if exponent >= -22 && exponent <= 22 {
                var d = Double(significand)
                if exponent < 0 { d /= powerOfTenDouble(-exponent) } else { d *= powerOfTenDouble(exponent) }
                let f = Float(d)
                if f.isFinite && f < Float.greatestFiniteMagnitude {
                    let center = Double(f)
                    let below = (center + Double(f.nextDown)) * 0.5
                    let above = (center + Double(f.nextUp)) * 0.5
                    let tolerance = 2 * d.ulp
                    if d - below > tolerance && above - d > tolerance { return negative ? -f : f }
                }
            }
        }
        return withNormalizedCString(in: base) { strtof($0, nil) }
    }

    /// The correctly rounded Double (identical to `strtod`). May be ±infinity on overflow.
    func doubleValue(in base: UnsafePointer<UInt8>) -> Double {
        if significand == 0 && !truncated { return negative ? -0.0 : 0.0 }
        if !truncated && digits <= 15 && exponent >= -22 && exponent <= 22 {
            var v = Double(significand)
            if exponent < 0 { v /= powerOfTenDouble(-exponent) } else { v *= powerOfTenDouble(exponent) }
            return negative ? -v : v
        }
        return withNormalizedCString(in: base) { strtod($0, nil) }
    }

    /// Rewrites the literal as "[-]DIGITSeEXP" (all mantissa digits, no '.') and calls `body` with it.
    func withNormalizedCString<R>(in base: UnsafePointer<UInt8>, _ body: (UnsafePointer<CChar>) -> R) -> R {
        let length = end - start
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: length + 16) { buffer in
            var n = 0
            var i = start
            var fractionDigits = 0
            var inFraction = false
            var explicitExponent = 0
            var exponentNegative = false
            if base[i] == UInt8(ascii: "-") { buffer[n] = 45; n += 1; i += 1 }
            while i < end {
                let c = base[i]
                if c == UInt8(ascii: ".") {
                    inFraction = true
                } else if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                    i += 1
                    if base[i] == UInt8(ascii: "-") { exponentNegative = true; i += 1 }
                    else if base[i] == UInt8(ascii: "+") { i += 1 }
                    while i < end {
                        if explicitExponent < 1_000_000_000 {
                            explicitExponent = explicitExponent * 10 + Int(base[i] &- 48)
                        }
                        i += 1
                    }
                    break
                } else {
                    buffer[n] = CChar(bitPattern: c); n += 1
                    if inFraction { fractionDigits += 1 }
                }
                i += 1
            }
            var e = (exponentNegative ? -explicitExponent : explicitExponent) - fractionDigits
            e = max(-2_000_000_000, min(2_000_000_000, e))
            buffer[n] = CChar(UInt8(ascii: "e")); n += 1
            if e < 0 { buffer[n] = 45; n += 1; e = -e }
            var tmp: (CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar) =
                (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            let digitCount = withUnsafeMutableBytes(of: &tmp) { raw -> Int in
                var k = 0
                repeat { raw[k] = UInt8(48 + e % 10); e /= 10; k += 1 } while e > 0
                for j in 0..<k { buffer[n + j] = CChar(bitPattern: raw[k - 1 - j]) }
                return k
            }
            n += digitCount
            buffer[n] = 0
            return body(buffer.baseAddress!)
        }
    }
}
