// MARK: - Record validation errors

/// A typed error for a sample or label record that breaks a wire-format rule.
///
/// `field` is a JSON path such as `teachers[1].logits[3]` (`$` for the record as a whole; protobuf records use the
/// same paths, their field names being the JSON keys); `rule` is a
/// stable machine code that the daemon copies into the dead letter; `message` says what was wrong.
public struct RecordError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable machine codes for the rule a record broke. The raw values never change.
    public enum Rule: String, Sendable, Codable, CaseIterable {
        /// A required field is absent.
        case missing
        /// A value has the wrong JSON type (for example a float where an integer is required).
        case wrongType = "wrong_type"
        /// A number is NaN, ±Infinity, or overflows the field's floating-point type.
        case notFinite = "not_finite"
        /// An array has the wrong number of elements.
        case wrongLength = "wrong_length"
        /// A number or string is outside its allowed range (label, ts, id length).
        case outOfRange = "out_of_range"
        /// The bytes are not valid JSON.
        case malformedJSON = "malformed_json"
        /// The bytes are not a valid protobuf serialization of the record's message (a topic in protobuf format).
        case malformedProtobuf = "malformed_protobuf"
        /// A string holds invalid UTF-8 or an unpaired surrogate escape.
        case invalidUTF8 = "invalid_utf8"
        /// The record exceeds the configured size limit.
        case tooLarge = "too_large"
        /// Objects and arrays nest deeper than the configured limit.
        case tooDeep = "too_deep"
        /// A known key appears twice in one object, or a teacher version appears twice.
        case duplicateKey = "duplicate_key"
    }

    /// JSON path of the offending field; `$` when the record as a whole is at fault.
    public var field: String
    /// The rule that was broken.
    public var rule: Rule
    /// A human-readable explanation.
    public var message: String

    /// Creates an error for `field` breaking `rule`.
    public init(field: String, rule: Rule, message: String) {
        self.field = field
        self.rule = rule
        self.message = message
    }

    /// `field: rule: message`.
    public var description: String { "\(field): \(rule.rawValue): \(message)" }
}
