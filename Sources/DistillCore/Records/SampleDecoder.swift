// MARK: - Sample and label decoding

/// Strict single-pass decoder for the sample and label wire formats (JSON, one record per Kafka message).
///
/// Rules: every number finite (Float range for logits/features); every logits array has length `classes`;
/// `features`, when present and `features` is configured, has that length; `label` in `0..<classes`;
/// `id` non-empty and at most `limits.maxIDBytes` UTF-8 bytes; `ts` an integer in `0...Int64.max`;
/// `teachers` non-empty with distinct non-empty versions; known keys at most once per object; unknown
/// fields are skipped (but must be valid JSON). Optional fields given as `null` count as absent.
/// Floats are correctly rounded (identical to `strtof`). The decoder holds no mutable state: share it freely;
/// pass a reused `DistillSample` to `decode(_:into:)` to avoid reallocating its arrays per record.
public struct SampleDecoder: Sendable {
    /// Size and nesting limits.
    public struct Limits: Sendable, Equatable {
        /// Largest accepted record in bytes (default 1 MiB).
        public var maxRecordBytes: Int
        /// Deepest accepted nesting of objects and arrays, the record itself being depth 1 (default 32).
        public var maxDepth: Int
        /// Longest accepted `id` in UTF-8 bytes (default 256).
        public var maxIDBytes: Int

        /// Creates limits; the defaults match the wire-format spec.
        public init(maxRecordBytes: Int = 1 << 20, maxDepth: Int = 32, maxIDBytes: Int = 256) {
            self.maxRecordBytes = maxRecordBytes
            self.maxDepth = maxDepth
            self.maxIDBytes = maxIDBytes
        }
    }

    /// Number of classes C.
    public let classes: Int
    /// Expected length of `features`, or nil to accept any length.
    public let features: Int?
    /// Size and nesting limits.
    public let limits: Limits

    /// Creates a decoder for C = `classes` and an optional feature dimension.
    public init(classes: Int, features: Int? = nil, limits: Limits = Limits()) {
        precondition(classes >= 1, "SampleDecoder: classes must be >= 1")
        self.classes = classes
        self.features = features
        self.limits = limits
    }

    // MARK: Sample

    /// Decodes one sample record.
    public func decode(_ bytes: [UInt8]) throws(RecordError) -> DistillSample {
        var sample = DistillSample(classes: classes)
        // Sized for the usual record (two teachers, a student): one allocation per array instead of a growth
        // sequence with copies, the arrays being filled 32 values at a time.
        sample.features.reserveCapacity(features ?? 0)
        sample.teacherVersions.reserveCapacity(2)
        sample.teacherLogits.reserveCapacity(2 * classes)
        sample.studentLogits.reserveCapacity(classes)
        try decode(bytes, into: &sample)
        return sample
    }

    /// Decodes one sample record into `sample`, reusing its arrays' storage.
    public func decode(_ bytes: [UInt8], into sample: inout DistillSample) throws(RecordError) {
        let result: Result<Void, RecordError> = bytes.withUnsafeBytes { raw in
            do throws(RecordError) {
                try decode(raw, into: &sample)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    /// Decodes one sample record from raw bytes (for example a librdkafka payload) into `sample`.
    public func decode(_ raw: UnsafeRawBufferPointer, into sample: inout DistillSample) throws(RecordError) {
        guard raw.count <= limits.maxRecordBytes else {
            throw RecordError(field: "$", rule: .tooLarge,
                              message: "record is \(raw.count) bytes; the limit is \(limits.maxRecordBytes)")
        }
        guard let basePtr = raw.baseAddress, raw.count > 0 else {
            throw RecordError(field: "$", rule: .malformedJSON, message: "empty record")
        }
        let base = basePtr.assumingMemoryBound(to: UInt8.self)
        var s = JSONScanner(base: base, count: raw.count, maxDepth: limits.maxDepth)
        let c = classes
        sample.classes = c
        sample.features.removeAll(keepingCapacity: true)
        sample.teacherVersions.removeAll(keepingCapacity: true)
        sample.teacherLogits.removeAll(keepingCapacity: true)
        sample.studentLogits.removeAll(keepingCapacity: true)
        sample.studentVersion = nil
        sample.label = nil
        sample.slice = nil
        var seen: UInt32 = 0
        var haveID = false, haveTS = false, haveTeachers = false
        let featureCount = features
        let maxIDBytes = limits.maxIDBytes

        try s.forEachMember("$") { (s: inout JSONScanner, key: ScannedString) throws(RecordError) in
            if s.equals(key, "id") {
                try Self.mark(&seen, 1, "id")
                sample.id = try Self.readID(&s, "id", maxBytes: maxIDBytes)
                haveID = true
            } else if s.equals(key, "ts") {
                try Self.mark(&seen, 2, "ts")
                sample.timestamp = try Self.readTimestamp(&s, "ts")
                haveTS = true
            } else if s.equals(key, "features") {
                try Self.mark(&seen, 4, "features")
                if s.consumeNull() { return }
                try Self.readFloats(&s, "features", into: &sample.features)
                if let d = featureCount, sample.features.count != d {
                    throw RecordError(field: "features", rule: .wrongLength,
                                      message: "has \(sample.features.count) values; expected \(d)")
                }
            } else if s.equals(key, "teachers") {
                try Self.mark(&seen, 8, "teachers")
                try Self.readTeachers(&s, classes: c, into: &sample)
                haveTeachers = true
            } else if s.equals(key, "student") {
                try Self.mark(&seen, 16, "student")
                if s.consumeNull() { return }
                try Self.readStudent(&s, classes: c, into: &sample)
            } else if s.equals(key, "label") {
                try Self.mark(&seen, 32, "label")
                if s.consumeNull() { return }
                sample.label = try Self.readLabel(&s, "label", classes: c)
            } else if s.equals(key, "slice") {
                try Self.mark(&seen, 64, "slice")
                if s.consumeNull() { return }
                let token = try s.scanString("slice")
                sample.slice = s.decodeString(token)
            } else {
                let snapshot = s
                try s.skipValue(Self.path("$", key, snapshot))
            }
        }
        try Self.expectEnd(&s)
        if !haveID { throw RecordError(field: "id", rule: .missing, message: "required field is absent") }
        if !haveTS { throw RecordError(field: "ts", rule: .missing, message: "required field is absent") }
        if !haveTeachers { throw RecordError(field: "teachers", rule: .missing, message: "required field is absent") }
    }

    /// Records that a key was read; a second occurrence is an error. (A nested function capturing `seen` cost a
    /// dynamic exclusivity check per key.)
    @inline(__always)
    static func mark(_ seen: inout UInt32, _ bit: UInt32, _ name: String) throws(RecordError) {
        if seen & bit != 0 { throw RecordError(field: name, rule: .duplicateKey, message: "key appears twice") }
        seen |= bit
    }

    // MARK: Label record

    /// Decodes a label record `{"id": ..., "label": k, "ts": ...}`; all three fields are required.
    public func decodeLabel(_ bytes: [UInt8]) throws(RecordError) -> LabelRecord {
        let result: Result<LabelRecord, RecordError> = bytes.withUnsafeBytes { raw in
            do throws(RecordError) { return .success(try decodeLabel(raw)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Decodes a label record from raw bytes.
    public func decodeLabel(_ raw: UnsafeRawBufferPointer) throws(RecordError) -> LabelRecord {
        guard raw.count <= limits.maxRecordBytes else {
            throw RecordError(field: "$", rule: .tooLarge,
                              message: "record is \(raw.count) bytes; the limit is \(limits.maxRecordBytes)")
        }
        guard let basePtr = raw.baseAddress, raw.count > 0 else {
            throw RecordError(field: "$", rule: .malformedJSON, message: "empty record")
        }
        var s = JSONScanner(base: basePtr.assumingMemoryBound(to: UInt8.self), count: raw.count,
                            maxDepth: limits.maxDepth)
        var id: String?, label: Int?, ts: Int64?
        let c = classes
        let maxIDBytes = limits.maxIDBytes
        try s.forEachMember("$") { (s: inout JSONScanner, key: ScannedString) throws(RecordError) in
            if s.equals(key, "id") {
                if id != nil { throw RecordError(field: "id", rule: .duplicateKey, message: "key appears twice") }
                id = try Self.readID(&s, "id", maxBytes: maxIDBytes)
            } else if s.equals(key, "label") {
                if label != nil { throw RecordError(field: "label", rule: .duplicateKey, message: "key appears twice") }
                label = try Self.readLabel(&s, "label", classes: c)
            } else if s.equals(key, "ts") {
                if ts != nil { throw RecordError(field: "ts", rule: .duplicateKey, message: "key appears twice") }
                ts = try Self.readTimestamp(&s, "ts")
            } else {
                let snapshot = s
                try s.skipValue(Self.path("$", key, snapshot))
            }
        }
        try Self.expectEnd(&s)
        guard let id else { throw RecordError(field: "id", rule: .missing, message: "required field is absent") }
        guard let label else { throw RecordError(field: "label", rule: .missing, message: "required field is absent") }
        guard let ts else { throw RecordError(field: "ts", rule: .missing, message: "required field is absent") }
        return LabelRecord(id: id, label: label, timestamp: ts)
    }

    // MARK: Field readers

    static func path(_ parent: String, _ key: ScannedString, _ s: JSONScanner) -> String {
        let name = s.decodeString(key)
        return parent == "$" ? name : parent + "." + name
    }

    static func expectEnd(_ s: inout JSONScanner) throws(RecordError) {
        s.skipWhitespace()
        if s.pos != s.count { throw s.malformed("$", "trailing data after the record") }
    }

    static func readID(_ s: inout JSONScanner, _ field: String, maxBytes: Int) throws(RecordError) -> String {
        let token = try s.scanString(field)
        let n = s.decodedByteCount(token)
        if n == 0 { throw RecordError(field: field, rule: .outOfRange, message: "must be a non-empty string") }
        if n > maxBytes {
            throw RecordError(field: field, rule: .outOfRange, message: "is \(n) bytes; at most \(maxBytes) allowed")
        }
        return s.decodeString(token)
    }

    static func readTimestamp(_ s: inout JSONScanner, _ field: String) throws(RecordError) -> Int64 {
        let d = try s.scanNumber(field)
        guard d.isIntegerLiteral else {
            throw RecordError(field: field, rule: .wrongType, message: "must be an integer (milliseconds)")
        }
        if d.negative && d.significand != 0 {
            throw RecordError(field: field, rule: .outOfRange, message: "must not be negative")
        }
        guard !d.truncated, d.exponent == 0, d.significand <= UInt64(Int64.max) else {
            throw RecordError(field: field, rule: .outOfRange, message: "does not fit in a signed 64-bit integer")
        }
        return Int64(d.significand)
    }

    static func readLabel(_ s: inout JSONScanner, _ field: String, classes: Int) throws(RecordError) -> Int {
        let d = try s.scanNumber(field)
        guard d.isIntegerLiteral else {
            throw RecordError(field: field, rule: .wrongType, message: "must be an integer class index")
        }
        guard !d.negative || d.significand == 0, !d.truncated, d.significand < UInt64(classes) else {
            throw RecordError(field: field, rule: .outOfRange, message: "must be in 0..<\(classes)")
        }
        return Int(d.significand)
    }

    /// Appends the Floats of the number array `field` to `out` (the field name is built only for errors).
    @inline(__always)
    static func readFloats(_ s: inout JSONScanner, _ field: @autoclosure () -> String, into out: inout [Float])
        throws(RecordError) {
        try s.readFloatArray(field(), element: { i in "\(field())[\(i)]" }, into: &out)
    }

    static func readTeachers(_ s: inout JSONScanner, classes: Int, into sample: inout DistillSample)
        throws(RecordError) {
        try s.forEachElement("teachers") { (s: inout JSONScanner, t: Int) throws(RecordError) in
            // Field names are built only when an error is thrown (no per-record string work).
            func name(_ suffix: String) -> String { "teachers[\(t)]" + suffix }
            var version: String?
            var haveLogits = false
            let logitsStart = sample.teacherLogits.count
            try s.forEachMember(name("")) { (s: inout JSONScanner, key: ScannedString) throws(RecordError) in
                if s.equals(key, "version") {
                    if version != nil {
                        throw RecordError(field: name(".version"), rule: .duplicateKey, message: "key appears twice")
                    }
                    let token = try s.scanString(name(".version"))
                    let v = s.decodeString(token)
                    if v.isEmpty {
                        throw RecordError(field: name(".version"), rule: .outOfRange, message: "must be non-empty")
                    }
                    version = v
                } else if s.equals(key, "logits") {
                    if haveLogits {
                        throw RecordError(field: name(".logits"), rule: .duplicateKey, message: "key appears twice")
                    }
                    try readFloats(&s, name(".logits"), into: &sample.teacherLogits)
                    haveLogits = true
                } else {
                    let snapshot = s
                    try s.skipValue(path(name(""), key, snapshot))
                }
            }
            guard let version else {
                throw RecordError(field: name(".version"), rule: .missing, message: "required field is absent")
            }
            guard haveLogits else {
                throw RecordError(field: name(".logits"), rule: .missing, message: "required field is absent")
            }
            let n = sample.teacherLogits.count - logitsStart
            if n != classes {
                throw RecordError(field: name(".logits"), rule: .wrongLength,
                                  message: "has \(n) values; expected \(classes)")
            }
            if sample.teacherVersions.contains(version) {
                throw RecordError(field: name(".version"), rule: .duplicateKey,
                                  message: "teacher version '\(version)' appears twice")
            }
            sample.teacherVersions.append(version)
        }
        if sample.teacherVersions.isEmpty {
            throw RecordError(field: "teachers", rule: .wrongLength, message: "must have at least one entry")
        }
    }

    static func readStudent(_ s: inout JSONScanner, classes: Int, into sample: inout DistillSample)
        throws(RecordError) {
        var version: String?
        var haveLogits = false
        try s.forEachMember("student") { (s: inout JSONScanner, key: ScannedString) throws(RecordError) in
            if s.equals(key, "version") {
                if version != nil {
                    throw RecordError(field: "student.version", rule: .duplicateKey, message: "key appears twice")
                }
                let v = s.decodeString(try s.scanString("student.version"))
                if v.isEmpty {
                    throw RecordError(field: "student.version", rule: .outOfRange, message: "must be non-empty")
                }
                version = v
            } else if s.equals(key, "logits") {
                if haveLogits {
                    throw RecordError(field: "student.logits", rule: .duplicateKey, message: "key appears twice")
                }
                try readFloats(&s, "student.logits", into: &sample.studentLogits)
                haveLogits = true
            } else {
                let snapshot = s
                try s.skipValue(path("student", key, snapshot))
            }
        }
        guard let version else {
            throw RecordError(field: "student.version", rule: .missing, message: "required field is absent")
        }
        guard haveLogits else {
            throw RecordError(field: "student.logits", rule: .missing, message: "required field is absent")
        }
        if sample.studentLogits.count != classes {
            throw RecordError(field: "student.logits", rule: .wrongLength,
                              message: "has \(sample.studentLogits.count) values; expected \(classes)")
        }
        sample.studentVersion = version
    }
}

// MARK: - Float parsing entry points (exposed for tests and other decoders)

/// Parses a complete JSON number literal to a correctly rounded Float (same result as `strtof`).
/// Returns nil if `text` is not exactly one JSON number (NaN/Infinity are not JSON numbers).
public func parseJSONFloat(_ text: String) -> Float? {
    var copy = text
    return copy.withUTF8 { buf -> Float? in
        guard let base = buf.baseAddress, buf.count > 0 else { return nil }
        var s = JSONScanner(base: base, count: buf.count, maxDepth: 1)
        guard let d = try? s.scanNumber("$"), s.pos == buf.count, d.start == 0 else { return nil }
        return d.floatValue(in: base)
    }
}

/// Parses a complete JSON number literal to a correctly rounded Double (same result as `strtod`).
public func parseJSONDouble(_ text: String) -> Double? {
    var copy = text
    return copy.withUTF8 { buf -> Double? in
        guard let base = buf.baseAddress, buf.count > 0 else { return nil }
        var s = JSONScanner(base: base, count: buf.count, maxDepth: 1)
        guard let d = try? s.scanNumber("$"), s.pos == buf.count, d.start == 0 else { return nil }
        return d.doubleValue(in: base)
    }
}
