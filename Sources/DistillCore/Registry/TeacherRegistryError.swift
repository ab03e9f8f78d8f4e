// MARK: - Errors of the teacher registry

/// An error raised while decoding registry records or validating registry configuration.
///
/// `code` is stable; `field` names the record field or configuration key; `reason` says what was wrong and
/// what to do.
public struct TeacherRegistryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable machine-readable codes.
    public enum Code: String, Sendable, Equatable {
        /// A `teachers` record is malformed.
        case invalidRecord = "registry.invalid_record"
        /// A registry or strategy configuration value is out of range.
        case invalidConfiguration = "registry.invalid_configuration"
    }

    /// What kind of failure this is.
    public var code: Code
    /// The record field or configuration key at fault.
    public var field: String
    /// A human explanation.
    public var reason: String

    /// Creates an error.
    public init(_ code: Code, field: String, reason: String) {
        self.code = code
        self.field = field
        self.reason = reason
    }

    /// `code` at `field`: reason.
    public var description: String { "\(code.rawValue) at \(field): \(reason)" }
}
