// MARK: - Single-pass JSON byte scanner
//
// Works directly on the record's bytes; builds no tree. Validates full JSON syntax (RFC 8259) for
// the values it skips: nested objects/arrays, strings with escapes (including \uXXXX surrogate pairs),
// numbers, true/false/null. Strings must be valid UTF-8 (RFC 3629: no overlongs, no surrogates).

/// A raw key or string token: byte range inside the quotes, and whether it contained escapes.
struct ScannedString {
    var start: Int
    var end: Int
    var hasEscapes: Bool
}

struct JSONScanner {
    let base: UnsafePointer<UInt8>
    let count: Int
    var pos: Int = 0
    var depth: Int = 0
    let maxDepth: Int

    init(base: UnsafePointer<UInt8>, count: Int, maxDepth: Int) {
        self.base = base
        self.count = count
        self.maxDepth = maxDepth
    }

    // MARK: Errors

    func malformed(_ field: String, _ what: String) -> RecordError {
        RecordError(field: field, rule: .malformedJSON, message: "\(what) at byte \(pos)")
    }

    // MARK: Structure

    mutating func skipWhitespace() {
        while pos < count {
            let c = base[pos]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 } else { return }
        }
    }

    /// Next non-whitespace byte without consuming it; 0 at end of input.
    mutating func peek() -> UInt8 {
        skipWhitespace()
        return pos < count ? base[pos] : 0
    }

    mutating func expect(_ byte: UInt8, _ field: @autoclosure () -> String) throws(RecordError) {
        if peek() != byte {
            throw malformed(field(), "expected '\(Character(Unicode.Scalar(byte)))'")
        }
        pos += 1
    }

    mutating func enter(_ field: @autoclosure () -> String) throws(RecordError) {
        depth += 1
        if depth > maxDepth {
            throw RecordError(field: field(), rule: .tooDeep, message: "nesting deeper than \(maxDepth)")
        }
    }

    mutating func leave() { depth -= 1 }

    /// After an element: consumes ',' and returns true, or consumes `close` and returns false.
    mutating func nextElement(close: UInt8, _ field: @autoclosure () -> String) throws(RecordError) -> Bool {
        let c = peek()
        if c == UInt8(ascii: ",") { pos += 1; return true }
        if c == close { pos += 1; return false }
        throw malformed(field(), "expected ',' or '\(Character(Unicode.Scalar(close)))'")
    }

    /// Iterates the members of an object whose '{' is next. `body` receives the key and must consume the value.
    mutating func forEachMember(
        _ field: @autoclosure () -> String, _ body: (inout JSONScanner, ScannedString) throws(RecordError) -> Void
    ) throws(RecordError) {
        if peek() != UInt8(ascii: "{") {
            throw RecordError(field: field(), rule: .wrongType, message: "must be an object")
        }
        pos += 1
        try enter(field())
        if peek() == UInt8(ascii: "}") { pos += 1; leave(); return }
        repeat {
            if peek() != UInt8(ascii: "\"") { throw malformed(field(), "expected a key string") }
            let key = try scanString(field())
            try expect(UInt8(ascii: ":"), field())
            try body(&self, key)
        } while try nextElement(close: UInt8(ascii: "}"), field())
        leave()
    }

    /// Iterates the elements of an array whose '[' is next; `body` gets the index and must consume the element.
    mutating func forEachElement(
        _ field: @autoclosure () -> String, _ body: (inout JSONScanner, Int) throws(RecordError) -> Void
    ) throws(RecordError) {
        if peek() != UInt8(ascii: "[") {
            throw RecordError(field: field(), rule: .wrongType, message: "must be an array")
        }
        pos += 1
        try enter(field())
        if peek() == UInt8(ascii: "]") { pos += 1; leave(); return }
        var index = 0
        repeat {
            try body(&self, index)
            index += 1
        } while try nextElement(close: UInt8(ascii: "]"), field())
        leave()
    }

    /// True (and consumes it) if the next token is `null`.
    mutating func consumeNull() -> Bool {
        if peek() == UInt8(ascii: "n") && pos + 4 <= count && base[pos + 1] == UInt8(ascii: "u")
            && base[pos + 2] == UInt8(ascii: "l") && base[pos + 3] == UInt8(ascii: "l") {
            pos += 4
            return true
        }
        return false
    }

    /// Skips any JSON value, validating it.
    mutating func skipValue(_ field: @autoclosure () -> String) throws(RecordError) {
        switch peek() {
        case UInt8(ascii: "{"):
            try forEachMember(field()) { (s: inout JSONScanner, _) throws(RecordError) in try s.skipValue(field()) }
        case UInt8(ascii: "["):
            try forEachElement(field()) { (s: inout JSONScanner, _) throws(RecordError) in try s.skipValue(field()) }
        case UInt8(ascii: "\""):
            _ = try scanString(field())
        case UInt8(ascii: "t"): try literal("true", field())
        case UInt8(ascii: "f"): try literal("false", field())
        case UInt8(ascii: "n"): try literal("null", field())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            _ = try scanNumber(field())
        case 0: throw malformed(field(), "unexpected end of input")
        default: throw malformed(field(), "unexpected character")
        }
    }

    mutating func literal(_ word: StaticString, _ field: @autoclosure () -> String) throws(RecordError) {
        let n = word.utf8CodeUnitCount
        guard pos + n <= count else { throw malformed(field(), "truncated literal") }
        let p = word.utf8Start
        for i in 0..<n where base[pos + i] != p[i] { throw malformed(field(), "invalid literal") }
        pos += n
    }

    /// True if the bytes at the cursor spell `word` (no consumption).
    func lookingAt(_ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard pos + n <= count else { return false }
        let p = word.utf8Start
        for i in 0..<n where base[pos + i] != p[i] { return false }
        return true
    }

    // MARK: Strings

    /// Scans a string whose opening quote is next; validates escapes and UTF-8. Returns the raw range.
    mutating func scanString(_ field: @autoclosure () -> String) throws(RecordError) -> ScannedString {
        if peek() != UInt8(ascii: "\"") {
            throw RecordError(field: field(), rule: .wrongType, message: "must be a string")
        }
        pos += 1
        let start = pos
        var escapes = false
        while pos < count {
            let c = base[pos]
            if c == UInt8(ascii: "\"") {
                let s = ScannedString(start: start, end: pos, hasEscapes: escapes)
                pos += 1
                return s
            } else if c == UInt8(ascii: "\\") {
                escapes = true
                try skipEscape(field())
            } else if c < 0x20 {
                throw malformed(field(), "unescaped control character in string")
            } else if c < 0x80 {
                pos += 1
            } else {
                try skipUTF8Sequence(field())
            }
        }
        throw malformed(field(), "unterminated string")
    }

    mutating func skipEscape(_ field: @autoclosure () -> String) throws(RecordError) {
        guard pos + 1 < count else { throw malformed(field(), "truncated escape") }
        switch base[pos + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
             UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            pos += 2
        case UInt8(ascii: "u"):
            let unit = try hex4(at: pos + 2, field())
            pos += 6
            if unit >= 0xD800 && unit <= 0xDBFF {
                guard pos + 1 < count, base[pos] == UInt8(ascii: "\\"), base[pos + 1] == UInt8(ascii: "u") else {
                    throw RecordError(field: field(), rule: .invalidUTF8, message: "unpaired high surrogate escape")
                }
                let low = try hex4(at: pos + 2, field())
                guard low >= 0xDC00 && low <= 0xDFFF else {
                    throw RecordError(field: field(), rule: .invalidUTF8, message: "unpaired high surrogate escape")
                }
                pos += 6
            } else if unit >= 0xDC00 && unit <= 0xDFFF {
                throw RecordError(field: field(), rule: .invalidUTF8, message: "unpaired low surrogate escape")
            }
        default:
            throw malformed(field(), "invalid escape")
        }
    }

    func hex4(at p: Int, _ field: @autoclosure () -> String) throws(RecordError) -> UInt32 {
        guard p + 4 <= count else { throw malformed(field(), "truncated \\u escape") }
        var v: UInt32 = 0
        for i in 0..<4 {
            let c = base[p + i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - 48)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - 87)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - 55)
            default: throw malformed(field(), "invalid hex digit in \\u escape")
            }
            v = v << 4 | d
        }
        return v
    }

    /// Validates one multi-byte UTF-8 sequence starting at `pos` (RFC 3629 table 3-7) and skips it.
    mutating func skipUTF8Sequence(_ field: @autoclosure () -> String) throws(RecordError) {
        let c0 = base[pos]
        var need = 0
        var lo: UInt8 = 0x80
        var hi: UInt8 = 0xBF
        switch c0 {
        case 0xC2...0xDF: need = 1
        case 0xE0: need = 2; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: need = 2
        case 0xED: need = 2; hi = 0x9F
        case 0xF0: need = 3; lo = 0x90
        case 0xF1...0xF3: need = 3
        case 0xF4: need = 3; hi = 0x8F
        default:
            throw RecordError(field: field(), rule: .invalidUTF8, message: "invalid UTF-8 lead byte at \(pos)")
        }
        guard pos + need < count else {
            throw RecordError(field: field(), rule: .invalidUTF8, message: "truncated UTF-8 sequence")
        }
        let c1 = base[pos + 1]
        guard c1 >= lo && c1 <= hi else {
            throw RecordError(field: field(), rule: .invalidUTF8, message: "invalid UTF-8 sequence at \(pos)")
        }
        for k in 2..<(need + 1) where base[pos + k] & 0xC0 != 0x80 {
            throw RecordError(field: field(), rule: .invalidUTF8, message: "invalid UTF-8 sequence at \(pos)")
        }
        pos += need + 1
    }

    /// Decodes an already validated string token into a Swift String.
    func decodeString(_ s: ScannedString) -> String {
        let raw = UnsafeBufferPointer(start: base + s.start, count: s.end - s.start)
        if !s.hasEscapes { return String(decoding: raw, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = 0
        while i < raw.count {
            let c = raw[i]
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            let e = raw[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = Self.hexValue(raw, i)
                i += 4
                if scalar >= 0xD800 && scalar <= 0xDBFF {
                    let low = Self.hexValue(raw, i + 2)
                    i += 6
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                for unit in UTF8.encode(Unicode.Scalar(scalar)!)! { out.append(unit) }
            default: out.append(e)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hexValue(_ raw: UnsafeBufferPointer<UInt8>, _ at: Int) -> UInt32 {
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = raw[at + k]
            let d: UInt32 = c <= 57 ? UInt32(c - 48) : (c <= 70 ? UInt32(c - 55) : UInt32(c - 87))
            v = v << 4 | d
        }
        return v
    }

    /// Decoded UTF-8 length of an already validated string token.
    func decodedByteCount(_ s: ScannedString) -> Int {
        if !s.hasEscapes { return s.end - s.start }
        return decodeString(s).utf8.count
    }

    /// True if the string token equals `word` byte for byte (keys: escaped keys are decoded first).
    @inline(__always)
    func equals(_ s: ScannedString, _ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        if s.hasEscapes {
            return decodeString(s).utf8.elementsEqual(UnsafeBufferPointer(start: word.utf8Start, count: n))
        }
        guard s.end - s.start == n else { return false }
        let p = word.utf8Start
        for i in 0..<n where base[s.start + i] != p[i] { return false }
        return true
    }

    // MARK: Numbers

    /// Scans a JSON number (RFC 8259 grammar) into its decimal form. Recognises the non-JSON tokens
    /// NaN / Infinity / -Infinity (as written by Python's json module) and reports them as `not_finite`.
    ///
    /// Fast path: one pass with a raw pointer over a well-formed number of at most 19 significant digits.
    /// Anything else (errors, longer significands) is re-scanned from its start by `scanNumberSlow`, which
    /// defines the result; both give identical `ScannedDecimal`s where the fast path applies.
    @inline(__always)
    mutating func scanNumber(_ field: @autoclosure () -> String) throws(RecordError) -> ScannedDecimal {
        skipWhitespace()
        let start = pos
        let end = base + count
        var p = base + start
        var negative = false
        if p < end && p.pointee == UInt8(ascii: "-") { negative = true; p += 1 }
        guard p < end, p.pointee &- 48 < 10 else { return try scanNumberSlow(field()) }
        var m: UInt64 = 0
        var significant = 0
        if p.pointee == UInt8(ascii: "0") {
            p += 1
        } else {
            significant = Self.accumulateDigits(&p, end, into: &m)
        }
        var exponent = 0
        var isInteger = true
        if p < end && p.pointee == UInt8(ascii: ".") {
            isInteger = false
            p += 1
            let fractionStart = p
            if m == 0 { while p < end && p.pointee == UInt8(ascii: "0") { p += 1 } }  // leading zeros: not significant
            significant &+= Self.accumulateDigits(&p, end, into: &m)
            if p == fractionStart { return try scanNumberSlow(field()) }
            exponent = fractionStart - p
        }
        if significant > 19 { return try scanNumberSlow(field()) }
        if p < end && p.pointee | 0x20 == UInt8(ascii: "e") {
            isInteger = false
            p += 1
            var negativeExponent = false
            if p < end && (p.pointee == UInt8(ascii: "+") || p.pointee == UInt8(ascii: "-")) {
                negativeExponent = p.pointee == UInt8(ascii: "-")
                p += 1
            }
            guard p < end, p.pointee &- 48 < 10 else { return try scanNumberSlow(field()) }
            var explicit = 0
            repeat {
                if explicit < 1_000_000_000 { explicit = explicit &* 10 &+ Int(p.pointee &- 48) }
                p += 1
            } while p < end && p.pointee &- 48 < 10
            exponent += negativeExponent ? -explicit : explicit
        }
        pos = p - base
        return ScannedDecimal(start: start, end: pos, negative: negative, significand: m, digits: significant,
                              truncated: false, exponent: exponent, isIntegerLiteral: isInteger)
    }

    /// Consumes the run of ASCII digits at `p` (none is fine), folding them into `m` (m = 10·m + digit, wrapping:
    /// only meaningful for at most 19 significant digits in all); returns how many it consumed.
    ///
    /// Eight bytes at a time while they are in bounds (SWAR, as in simdjson's `parse_eight_digits_unrolled`):
    /// the digit run's length is the first byte whose value minus '0' is not below 10, and its value comes
    /// from three multiply-shift steps; the last bytes of the record go one at a time.
    @inline(__always)
    static func accumulateDigits(_ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>,
                                 into m: inout UInt64) -> Int {
        let start = p
        while end - p >= 8 {
            let word = UInt64(littleEndian: UnsafeRawPointer(p).loadUnaligned(as: UInt64.self))
            let t = word ^ 0x3030_3030_3030_3030
            // Bit 7 of byte i is set iff byte i is not a digit (carries only move toward later bytes).
            let nonDigit = ((t &+ 0x7676_7676_7676_7676) | t) & 0x8080_8080_8080_8080
            let n = nonDigit == 0 ? 8 : nonDigit.trailingZeroBitCount >> 3
            if n == 0 { break }
            // Keep the n digits, moved to the high bytes: the vacated low bytes read as leading zeros.
            var v = t &<< UInt64(64 &- 8 &* n)
            v = (v &* 10 &+ (v >> 8)) & 0x00FF_00FF_00FF_00FF
            v = (v &* 100 &+ (v >> 16)) & 0x0000_FFFF_0000_FFFF
            v = (v &* 10000 &+ (v >> 32)) & 0x0000_0000_FFFF_FFFF
            m = m &* powerOfTenUInt64(n) &+ v
            p += n
            if n < 8 { return p - start }
        }
        while p < end && p.pointee &- 48 < 10 {
            m = m &* 10 &+ UInt64(p.pointee &- 48)
            p += 1
        }
        return p - start
    }

    /// The reference scanner: any number, every error. Restarts at the current token.
    @inline(never)
    mutating func scanNumberSlow(_ field: @autoclosure () -> String) throws(RecordError) -> ScannedDecimal {
        let c0 = peek()
        let start = pos
        if c0 == UInt8(ascii: "N") || c0 == UInt8(ascii: "I")
            || (c0 == UInt8(ascii: "-") && pos + 1 < count && base[pos + 1] == UInt8(ascii: "I")) {
            if lookingAt("NaN") || lookingAt("Infinity") || lookingAt("-Infinity") {
                throw RecordError(field: field(), rule: .notFinite, message: "must be a finite number")
            }
        }
        var d = ScannedDecimal(start: start, end: start, negative: false, significand: 0, digits: 0,
                               truncated: false, exponent: 0, isIntegerLiteral: true)
        if pos < count && base[pos] == UInt8(ascii: "-") { d.negative = true; pos += 1 }
        guard pos < count, base[pos] >= 48, base[pos] <= 57 else {
            if pos == start, c0 == UInt8(ascii: "\"") || c0 == UInt8(ascii: "{") || c0 == UInt8(ascii: "[")
                || c0 == UInt8(ascii: "t") || c0 == UInt8(ascii: "f") || c0 == UInt8(ascii: "n") {
                throw RecordError(field: field(), rule: .wrongType, message: "must be a number")
            }
            throw malformed(field(), "invalid number")
        }
        var dropped = 0
        if base[pos] == 48 {
            pos += 1
        } else {
            while pos < count, base[pos] >= 48, base[pos] <= 57 {
                let digit = UInt64(base[pos] - 48)
                if d.digits < 19 { d.significand = d.significand * 10 + digit; d.digits += 1 }
                else { d.truncated = true; dropped += 1 }
                pos += 1
            }
        }
        var fraction = 0
        if pos < count && base[pos] == UInt8(ascii: ".") {
            d.isIntegerLiteral = false
            pos += 1
            guard pos < count, base[pos] >= 48, base[pos] <= 57 else { throw malformed(field(), "invalid fraction") }
            while pos < count, base[pos] >= 48, base[pos] <= 57 {
                let digit = UInt64(base[pos] - 48)
                if d.significand == 0 && digit == 0 { fraction += 1 }
                else if d.digits < 19 { d.significand = d.significand * 10 + digit; d.digits += 1; fraction += 1 }
                else { d.truncated = true }
                pos += 1
            }
        }
        var explicit = 0
        if pos < count && (base[pos] == UInt8(ascii: "e") || base[pos] == UInt8(ascii: "E")) {
            d.isIntegerLiteral = false
            pos += 1
            var negativeExponent = false
            if pos < count && (base[pos] == UInt8(ascii: "+") || base[pos] == UInt8(ascii: "-")) {
                negativeExponent = base[pos] == UInt8(ascii: "-")
                pos += 1
            }
            guard pos < count, base[pos] >= 48, base[pos] <= 57 else { throw malformed(field(), "invalid exponent") }
            while pos < count, base[pos] >= 48, base[pos] <= 57 {
                if explicit < 1_000_000_000 { explicit = explicit * 10 + Int(base[pos] - 48) }
                pos += 1
            }
            if negativeExponent { explicit = -explicit }
        }
        d.exponent = explicit - fraction + dropped
        d.end = pos
        return d
    }

    // MARK: Number arrays

    /// Scans one number and returns it correctly rounded to Float (identical to `scanNumber` + `floatValue`).
    ///
    /// Fast path, entirely in registers: a well-formed number of at most 15 significant digits whose value
    /// `floatValue`'s exact tiers 1–2 can round. Everything else goes through `scanFloatSlow`, from the
    /// number's start, or through `ScannedDecimal.floatValueSlow`.
    @inline(__always)
    mutating func scanFloat(_ field: @autoclosure () -> String) throws(RecordError) -> Float {
        let start = pos
        let end = base + count
        var p = base + start
        var negative = false
        if p < end && p.pointee == UInt8(ascii: "-") { negative = true; p += 1 }
        guard p < end, p.pointee &- 48 < 10 else { return try scanFloatSlow(field()) }
        var m: UInt64 = 0
        var significant = 0
        if p.pointee == UInt8(ascii: "0") {
            p += 1
        } else {
            significant = Self.accumulateDigits(&p, end, into: &m)
        }
        var exponent = 0
        var isInteger = true
        if p < end && p.pointee == UInt8(ascii: ".") {
            isInteger = false
            p += 1
            let fractionStart = p
            if m == 0 { while p < end && p.pointee == UInt8(ascii: "0") { p += 1 } }
            significant &+= Self.accumulateDigits(&p, end, into: &m)
            if p == fractionStart { return try scanFloatSlow(field()) }
            exponent = fractionStart - p
        }
        if significant > 15 { return try scanFloatSlow(field()) }
        if p < end && p.pointee | 0x20 == UInt8(ascii: "e") {
            isInteger = false
            p += 1
            var negativeExponent = false
            if p < end && (p.pointee == UInt8(ascii: "+") || p.pointee == UInt8(ascii: "-")) {
                negativeExponent = p.pointee == UInt8(ascii: "-")
                p += 1
            }
            guard p < end, p.pointee &- 48 < 10 else { return try scanFloatSlow(field()) }
            var explicit = 0
            repeat {
                if explicit < 1_000_000_000 { explicit = explicit &* 10 &+ Int(p.pointee &- 48) }
                p += 1
            } while p < end && p.pointee &- 48 < 10
            exponent += negativeExponent ? -explicit : explicit
        }
        pos = p - base
        // `ScannedDecimal.floatValue` tiers 1 and 2, inline.
        if m == 0 { return negative ? -0.0 : 0.0 }
        if significant <= 7 && exponent >= -10 && exponent <= 10 {
            var v = Float(m)
            if exponent < 0 { v /= powerOfTenFloat(-exponent) } else { v *= powerOfTenFloat(exponent) }
            return negative ? -v : v
        }
        if exponent >= -22 && exponent <= 22 {
            var d = Double(m)
            if exponent < 0 { d /= powerOfTenDouble(-exponent) } else { d *= powerOfTenDouble(exponent) }
            if d.bitPattern & 0x1FFF_FFFF != 0x1000_0000 {
                let f = Float(d)
                return negative ? -f : f
            }
        }
        return ScannedDecimal(start: start, end: pos, negative: negative, significand: m, digits: significant,
                              truncated: false, exponent: exponent, isIntegerLiteral: isInteger)
            .floatValueSlow(in: base)
    }

    /// `scanFloat` for the numbers its fast path leaves out (and every error): the reference scanner and conversion.
    @inline(never)
    mutating func scanFloatSlow(_ field: @autoclosure () -> String) throws(RecordError) -> Float {
        let d = try scanNumberSlow(field())
        return d.floatValue(in: base)
    }

    /// Reads an array of numbers whose '[' is next as correctly rounded Floats, appending them to `out`.
    /// `element(i)` names element i in errors (built only when one is thrown). Non-finite or Float-overflowing
    /// values are `not_finite`; the rest of the rules are those of `forEachElement` and `scanNumber`.
    ///
    /// Values are staged in a fixed 32-Float buffer on the stack and appended to `out` a block at a time.
    mutating func readFloatArray(
        _ field: @autoclosure () -> String, element: (Int) -> String, into out: inout [Float]
    ) throws(RecordError) {
        if peek() != UInt8(ascii: "[") {
            throw RecordError(field: field(), rule: .wrongType, message: "must be an array")
        }
        pos += 1
        try enter(field())
        if peek() == UInt8(ascii: "]") { pos += 1; leave(); return }
        var block = FloatBlock()
        var index = 0
        while true {
            skipWhitespace()
            let v = try scanFloat(element(index))
            if !v.isFinite {
                throw RecordError(field: element(index), rule: .notFinite, message: "overflows a 32-bit float")
            }
            if block.append(v) { block.flush(into: &out) }
            index += 1
            if pos < count {  // the common separators, without whitespace
                let c = base[pos]
                if c == UInt8(ascii: ",") { pos += 1; continue }
                if c == UInt8(ascii: "]") { pos += 1; break }
            }
            if !(try nextElement(close: UInt8(ascii: "]"), field())) { break }
        }
        block.flush(into: &out)
        leave()
    }
}

/// A fixed block of 32 Floats on the stack: decoded values are staged here and appended to their array a block at a
/// time (one capacity and uniqueness check per block instead of per value).
struct FloatBlock {
    static let capacity = 32
    var count = 0
    var values: (SIMD16<Float>, SIMD16<Float>) = (.zero, .zero)

    /// Stores `v`; returns true when the block is full and must be flushed.
    @inline(__always)
    mutating func append(_ v: Float) -> Bool {
        let i = count
        withUnsafeMutableBytes(of: &values) { $0.storeBytes(of: v, toByteOffset: i &* 4, as: Float.self) }
        count = i &+ 1
        return count == Self.capacity
    }

    /// Appends the staged values to `out` and empties the block.
    @inline(__always)
    mutating func flush(into out: inout [Float]) {
        let n = count
        if n == 0 { return }
        withUnsafeBytes(of: values) { raw in
            out.append(contentsOf: UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: Float.self),
                                                       count: n))
        }
        count = 0
    }
}
