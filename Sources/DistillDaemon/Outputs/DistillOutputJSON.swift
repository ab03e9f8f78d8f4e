import Foundation
import KafkaClient

// MARK: - Deterministic JSON for output records

/// The JSON encoding every output record uses, so reprocessing the same input gives byte-identical records.
///
/// Keys are sorted (`.sortedKeys`), `/` is not escaped, there is no whitespace, and every number is finite:
/// the output types encode a NaN or ±Infinity as `null` (see `KeyedEncodingContainer.encodeFinite`), and
/// the encoder's own strategy would throw rather than write a non-JSON token if one slipped through.
public enum DistillOutputJSON {
    /// A fresh encoder with the deterministic settings (JSONEncoder is not `Sendable`: one per call).
    public static func makeEncoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .throw
        return e
    }

    /// Encodes `value` to deterministic JSON bytes.
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        Array(try makeEncoder().encode(value))
    }

    /// `x` if it is finite, else nil (written as `null`).
    @inlinable
    public static func finite(_ x: Double?) -> Double? {
        guard let x, x.isFinite else { return nil }
        return x
    }
}

extension KeyedEncodingContainer {
    /// Writes `value` as a JSON number, or `null` when it is nil, NaN or ±Infinity.
    mutating func encodeFinite(_ value: Double?, forKey key: Key) throws {
        if let v = DistillOutputJSON.finite(value) { try encode(v, forKey: key) } else { try encodeNil(forKey: key) }
    }

    /// Writes `value`, or `null` when it is nil (JSONEncoder's synthesised code would leave the key out).
    mutating func encodeOrNull<T: Encodable>(_ value: T?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }
}

// MARK: - Event time as RFC 3339

/// RFC 3339 timestamps of event times, computed arithmetically (no locale, calendar or time zone state).
public enum DistillOutputTime {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, always three fraction digits) for `milliseconds` since the Unix epoch.
    /// Years outside 0...9999 are clamped to that range's ends, as RFC 3339 has four-digit years only.
    public static func rfc3339(milliseconds: Int64) -> String {
        // Bounds: 0000-01-01T00:00:00.000Z ... 9999-12-31T23:59:59.999Z.
        let ms = min(max(milliseconds, -62_167_219_200_000), 253_402_300_799_999)
        let days = floorDivision(ms, 86_400_000)
        let msOfDay = ms - days * 86_400_000
        let (y, m, d) = civil(fromDays: days)
        let hh = msOfDay / 3_600_000, mm = msOfDay / 60_000 % 60, ss = msOfDay / 1000 % 60, fff = msOfDay % 1000
        return pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2) + "T" + pad(hh, 2) + ":" + pad(mm, 2) + ":"
            + pad(ss, 2) + "." + pad(fff, 3) + "Z"
    }

    /// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant, `civil_from_days`).
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = floorDivision(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        return (y, m, d)
    }

    static func floorDivision(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    static func pad(_ v: Int64, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}

// MARK: - DistillJSONOutput

/// A JSON output record: keyed, timestamped with its event time, encoded deterministically.
public protocol DistillJSONOutput: Encodable {
    /// The Kafka message key.
    var key: String { get }
    /// The event time the record describes (ms); the Kafka timestamp, so replays give identical records.
    var eventTimeMillis: Int64 { get }
    /// The `content-type` header.
    static var contentType: String { get }
    /// The default topic.
    static var topic: String { get }
}

extension DistillJSONOutput {
    /// Plain JSON unless the record says otherwise.
    public static var contentType: String { "application/json" }

    /// The JSON bytes (sorted keys, finite numbers).
    public func jsonBytes() throws -> [UInt8] { try DistillOutputJSON.encode(self) }

    /// The Kafka record: key `key`, value `jsonBytes()`, header `content-type`, timestamp = event time.
    public func producerRecord(topic: String = Self.topic) throws -> ProducerRecord {
        ProducerRecord(topic: topic, key: Array(key.utf8), value: try jsonBytes(),
                       headers: [KafkaHeader("content-type", Self.contentType)], timestamp: eventTimeMillis)
    }
}
