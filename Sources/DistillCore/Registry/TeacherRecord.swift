import Foundation

// MARK: - Teacher registry record

/// Lifecycle status of a teacher version.
public enum TeacherStatus: String, Sendable, Equatable, CaseIterable, Codable {
    /// Serving; the newest active teacher is the "new" teacher.
    case active
    /// Being evaluated; not distilled from under `latest`.
    case candidate
    /// Long-term-stable pin candidate (distilled from only when pinned by the `lts` strategy).
    case lts
    /// No longer used.
    case retired
}

/// One record of the `teachers` topic, keyed by version:
/// `{"version": "distilbert-v8", "major": 1, "created_at": <ms>, "accuracy": 0.931, "ece": 0.021,
///   "temperature": 1.4, "data_hash": "sha256:...", "status": "active"}`.
///
/// Decoding is strict: `version`, `major`, `created_at`, `accuracy`, `ece` and `status` are required;
/// `temperature` and `data_hash` are optional; unknown extra fields are ignored. Numbers must be finite,
/// accuracy and ECE in [0, 1], temperature > 0, major ≥ 0, version non-empty, status one of ``TeacherStatus``.
public struct TeacherRecord: Sendable, Equatable {
    /// Version name; the record key.
    public var version: String
    /// Architecture generation; a higher major is an architecture change.
    public var major: Int
    /// Creation time, ms since the epoch; orders versions.
    public var createdAtMilliseconds: Int64
    /// Recorded (offline) accuracy in [0, 1].
    public var accuracy: Double
    /// Recorded expected calibration error in [0, 1].
    public var ece: Double
    /// Recorded calibration temperature, if any.
    public var temperature: Double?
    /// Training data hash, e.g. `sha256:…`, if any.
    public var dataHash: String?
    /// Lifecycle status.
    public var status: TeacherStatus

    /// Creates a record (no validation; see ``validate()``).
    public init(
        version: String, major: Int, createdAtMilliseconds: Int64, accuracy: Double, ece: Double,
        temperature: Double? = nil, dataHash: String? = nil, status: TeacherStatus
    ) {
        self.version = version
        self.major = major
        self.createdAtMilliseconds = createdAtMilliseconds
        self.accuracy = accuracy
        self.ece = ece
        self.temperature = temperature
        self.dataHash = dataHash
        self.status = status
    }

    /// Checks value ranges; throws ``TeacherRegistryError`` naming the field.
    public func validate() throws {
        func bad(_ f: String, _ r: String) -> TeacherRegistryError {
            TeacherRegistryError(.invalidRecord, field: f, reason: r)
        }
        guard !version.isEmpty else { throw bad("version", "must be a non-empty string") }
        guard major >= 0 else { throw bad("major", "must be ≥ 0 (got \(major))") }
        guard accuracy.isFinite, (0...1).contains(accuracy) else {
            throw bad("accuracy", "must be a finite number in [0, 1] (got \(accuracy))")
        }
        guard ece.isFinite, (0...1).contains(ece) else {
            throw bad("ece", "must be a finite number in [0, 1] (got \(ece))")
        }
        if let temperature, !(temperature.isFinite && temperature > 0) {
            throw bad("temperature", "must be a finite number > 0 (got \(temperature))")
        }
    }

    /// Decodes and validates one record from JSON. When `key` (the Kafka message key) is given it must equal
    /// `version`. Throws ``TeacherRegistryError`` naming the field at fault.
    public static func decode(json: Data, key: String? = nil) throws -> TeacherRecord {
        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: json)
        } catch let e as TeacherRegistryError {
            throw e
        } catch let DecodingError.keyNotFound(k, _) {
            throw TeacherRegistryError(.invalidRecord, field: k.stringValue, reason: "required field is missing")
        } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx) {
            let field = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            throw TeacherRegistryError(
                .invalidRecord, field: field, reason: "wrong type or null: \(ctx.debugDescription)")
        } catch let DecodingError.dataCorrupted(ctx) {
            var field = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            var reason = "not valid JSON: \(ctx.debugDescription)"
            if field.isEmpty, let bad = nonFiniteNumberField(json) {
                field = bad.field
                reason = "number \(bad.token) is not finite"
            }
            throw TeacherRegistryError(.invalidRecord, field: field.isEmpty ? "record" : field, reason: reason)
        } catch {
            throw TeacherRegistryError(.invalidRecord, field: "record", reason: "\(error)")
        }
        let record = TeacherRecord(
            version: wire.version, major: wire.major, createdAtMilliseconds: wire.created_at, accuracy: wire.accuracy,
            ece: wire.ece, temperature: wire.temperature, dataHash: wire.data_hash, status: wire.status)
        try record.validate()
        if let key, key != record.version {
            throw TeacherRegistryError(
                .invalidRecord, field: "version", reason: "record version \(record.version) differs from its key \(key)"
            )
        }
        return record
    }

    /// Finds a top-level `"key": <number>` whose number is not a finite Double (e.g. `1e999`, `NaN`), which
    /// JSONDecoder reports only as corrupted data, so the error can name the field.
    static func nonFiniteNumberField(_ json: Data) -> (field: String, token: String)? {
        let text = String(decoding: json, as: UTF8.self)
        var i = text.startIndex
        while let q = text[i...].firstIndex(of: "\"") {
            guard let q2 = text[text.index(after: q)...].firstIndex(of: "\"") else { return nil }
            let key = String(text[text.index(after: q)..<q2])
            var j = text.index(after: q2)
            while j < text.endIndex, text[j] == " " || text[j] == "\n" || text[j] == "\t" || text[j] == "\r" {
                j = text.index(after: j)
            }
            if j < text.endIndex, text[j] == ":" {
                var k = text.index(after: j)
                while k < text.endIndex, text[k] == " " || text[k] == "\n" || text[k] == "\t" || text[k] == "\r" {
                    k = text.index(after: k)
                }
                if k < text.endIndex, !"\"{[tfn".contains(text[k]) {
                    let end = text[k...].firstIndex { ",} \n\r\t]".contains($0) } ?? text.endIndex
                    let token = String(text[k..<end])
                    if !(Double(token)?.isFinite ?? false) { return (key, token) }
                }
                i = k < text.endIndex ? k : text.endIndex
            } else {
                i = text.index(after: q2)
            }
            if i >= text.endIndex { return nil }
        }
        return nil
    }

    /// Convenience for a UTF-8 JSON string.
    public static func decode(json: String, key: String? = nil) throws -> TeacherRecord {
        try decode(json: Data(json.utf8), key: key)
    }

    /// The JSON wire form (snake_case keys).
    public func encodedJSON() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return try e.encode(
            Wire(
                version: version, major: major, created_at: createdAtMilliseconds, accuracy: accuracy, ece: ece,
                temperature: temperature, data_hash: dataHash, status: status))
    }

    // swiftlint:disable identifier_name
    struct Wire: Codable {
        var version: String
        var major: Int
        var created_at: Int64
        var accuracy: Double
        var ece: Double
        var temperature: Double?
        var data_hash: String?
        var status: TeacherStatus

        init(
            version: String, major: Int, created_at: Int64, accuracy: Double, ece: Double, temperature: Double?,
            data_hash: String?, status: TeacherStatus
        ) {
            self.version = version
            self.major = major
            self.created_at = created_at
            self.accuracy = accuracy
            self.ece = ece
            self.temperature = temperature
            self.data_hash = data_hash
            self.status = status
        }

        enum CodingKeys: String, CodingKey {
            case version, major, created_at, accuracy, ece, temperature, data_hash, status
        }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            version = try c.decode(String.self, forKey: .version)
            major = try c.decode(Int.self, forKey: .major)
            created_at = try c.decode(Int64.self, forKey: .created_at)
            accuracy = try c.decode(Double.self, forKey: .accuracy)
            ece = try c.decode(Double.self, forKey: .ece)
            temperature = try c.decodeIfPresent(Double.self, forKey: .temperature)
            data_hash = try c.decodeIfPresent(String.self, forKey: .data_hash)
            let raw = try c.decode(String.self, forKey: .status)
            guard let s = TeacherStatus(rawValue: raw) else {
                throw TeacherRegistryError(
                    .invalidRecord, field: "status",
                    reason: "unknown status \"\(raw)\"; expected one of active, candidate, lts, retired")
            }
            status = s
        }
    }
    // swiftlint:enable identifier_name
}
