// MARK: - Errors of the student (model, losses, optimizers, checkpoints)

/// An error raised by the online student: invalid configuration, or a checkpoint that cannot be read.
///
/// `code` is stable (for logs and alerts); `reason` says what was wrong and what to do; `field` names the
/// configuration field or checkpoint part concerned.
public struct StudentError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable machine-readable codes.
    public enum Code: String, Sendable, Equatable {
        /// A configuration value is out of range.
        case invalidConfiguration = "student.invalid_configuration"
        /// A safetensors buffer is malformed or does not match the model.
        case invalidCheckpoint = "student.invalid_checkpoint"
    }

    /// What kind of failure this is.
    public var code: Code
    /// The configuration field or checkpoint part at fault.
    public var field: String
    /// A human explanation: what was wrong and what to do.
    public var reason: String

    /// Creates an error.
    public init(_ code: Code, field: String, reason: String) {
        self.code = code
        self.field = field
        self.reason = reason
    }

    /// `code` at `field`: reason.
    public var description: String { "\(code.rawValue) at \(field): \(reason)" }

    static func config(_ field: String, _ reason: String) -> StudentError {
        StudentError(.invalidConfiguration, field: field, reason: reason)
    }

    static func checkpoint(_ field: String, _ reason: String) -> StudentError {
        StudentError(.invalidCheckpoint, field: field, reason: reason)
    }
}
