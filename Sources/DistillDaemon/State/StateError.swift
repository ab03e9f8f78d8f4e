#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - StateError

/// The one error type of the checkpoint store: a stable `code`, the file it is about, a human `reason` and a
/// `hint` that says what to do next.
public struct StateError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, with the facts a caller may branch on.
    public enum Kind: Sendable, Equatable {
        /// The file ends before the length its header announces (or before a full header).
        case truncated(expectedBytes: UInt64, actualBytes: UInt64)
        /// The stored CRC-32C does not match the bytes: the file was damaged after it was written.
        case checksumMismatch(stored: UInt32, computed: UInt32)
        /// The file does not start with `DSTLCKPT`: it is not a distilld checkpoint.
        case badMagic
        /// The file is a distilld checkpoint of a format version this build cannot read (older or newer).
        case unsupportedVersion(found: UInt32, supported: ClosedRange<UInt32>)
        /// The checksum is good but a part of the payload cannot be decoded; `name` is a section name or
        /// `<metadata>` / `<offsets>` / `<sections>` for the fixed parts.
        case malformedSection(name: String)
        /// Bytes follow the checksum trailer.
        case trailingBytes(count: UInt64)
        /// The latest checkpoint is missing while an older generation exists.
        case missing
        /// A system call failed; `errno` is the raw value (ENOSPC, EROFS, EACCES, EIO...).
        case io(operation: String, errno: Int32)
        /// `write` was given a sequence number that does not increase on the last one written or loaded.
        case sequenceNotIncreasing(last: UInt64, attempted: UInt64)
        /// The checkpoint to write cannot be encoded (duplicate or empty section name, string too long...).
        case invalidCheckpoint(reason: String)
    }

    /// What went wrong.
    public let kind: Kind
    /// The file or directory the error is about.
    public let path: String
    /// A one-line human explanation.
    public let reason: String
    /// What the operator can do about it.
    public let hint: String

    /// Creates an error; prefer the static constructors, which fill `reason` and `hint` consistently.
    public init(kind: Kind, path: String, reason: String, hint: String) {
        self.kind = kind
        self.path = path
        self.reason = reason
        self.hint = hint
    }

    /// A stable, greppable identifier such as `state.checksum_mismatch` or `state.no_space`.
    public var code: String {
        switch kind {
        case .truncated: "state.truncated"
        case .checksumMismatch: "state.checksum_mismatch"
        case .badMagic: "state.bad_magic"
        case .unsupportedVersion: "state.unsupported_version"
        case .malformedSection: "state.malformed_section"
        case .trailingBytes: "state.trailing_bytes"
        case .missing: "state.missing"
        case .io(_, let code):
            switch code {
            case ENOSPC, EDQUOT: "state.no_space"
            case EROFS: "state.read_only"
            case EACCES, EPERM: "state.permission_denied"
            default: "state.io_failed"
            }
        case .sequenceNotIncreasing: "state.sequence_not_increasing"
        case .invalidCheckpoint: "state.invalid_checkpoint"
        }
    }

    /// True when the file's content is bad (as opposed to the system failing to read or write it); only these
    /// errors are subject to `state.on_corrupt`.
    public var isCorruption: Bool {
        switch kind {
        case .truncated, .checksumMismatch, .badMagic, .unsupportedVersion, .malformedSection, .trailingBytes:
            true
        case .missing, .io, .sequenceNotIncreasing, .invalidCheckpoint:
            false
        }
    }

    /// `[code] path: reason. hint`
    public var description: String { "[\(code)] \(path): \(reason). \(hint)" }

    /// The same error with `extra` appended to its hint.
    func addingHint(_ extra: String) -> StateError {
        StateError(kind: kind, path: path, reason: reason, hint: hint + " " + extra)
    }
}

// MARK: - Constructors

extension StateError {
    static let corruptHint = "Set state.on_corrupt: reset to start fresh (the file is moved aside, not deleted), "
        + "or restore the file from backup."

    static func truncated(_ path: String, expected: UInt64, actual: UInt64) -> StateError {
        StateError(
            kind: .truncated(expectedBytes: expected, actualBytes: actual), path: path,
            reason: "checkpoint is truncated: \(actual) bytes on disk, \(expected) expected", hint: corruptHint)
    }

    static func checksumMismatch(_ path: String, stored: UInt32, computed: UInt32) -> StateError {
        StateError(
            kind: .checksumMismatch(stored: stored, computed: computed), path: path,
            reason: "checkpoint checksum mismatch: stored CRC-32C \(hex(stored)), computed \(hex(computed))",
            hint: corruptHint)
    }

    static func badMagic(_ path: String) -> StateError {
        StateError(
            kind: .badMagic, path: path,
            reason: "not a distilld checkpoint (the file does not start with \"DSTLCKPT\")",
            hint: "Check that state.directory points at distilld's own state directory. " + corruptHint)
    }

    static func unsupportedVersion(_ path: String, found: UInt32) -> StateError {
        let supported = StateCheckpointFormat.supportedVersions
        let age = found < supported.lowerBound ? "an older" : "a newer"
        return StateError(
            kind: .unsupportedVersion(found: found, supported: supported), path: path,
            reason: "checkpoint format version \(found) is \(age) format than this build reads "
                + "(\(supported.lowerBound)...\(supported.upperBound))",
            hint: "Run the distilld version that wrote it, or " + corruptHint.prefix(1).lowercased()
                + corruptHint.dropFirst())
    }

    static func malformed(_ path: String, section: String, _ detail: String) -> StateError {
        StateError(
            kind: .malformedSection(name: section), path: path,
            reason: "checkpoint section \"\(section)\" is malformed: \(detail)", hint: corruptHint)
    }

    static func trailingBytes(_ path: String, count: UInt64) -> StateError {
        StateError(
            kind: .trailingBytes(count: count), path: path,
            reason: "\(count) unexpected bytes after the checkpoint's checksum", hint: corruptHint)
    }

    static func io(_ path: String, operation: String, errno code: Int32) -> StateError {
        let text = String(cString: strerror(code))
        let name = errnoName(code)
        let hint: String
        switch code {
        case ENOSPC, EDQUOT:
            hint = "Free space on the state volume or point state.directory elsewhere; offsets are not committed "
                + "until a checkpoint is durable, and the previous checkpoint is intact."
        case EROFS:
            hint = "The state volume is mounted read-only; remount it read-write or point state.directory at a "
                + "writable volume. Offsets are not committed meanwhile."
        case EACCES, EPERM:
            hint = "Give the distilld user write access to the state directory (or remove an immutable flag). "
                + "Offsets are not committed meanwhile."
        default:
            hint = "Check the state volume (dmesg, df). Offsets are not committed until a checkpoint is durable."
        }
        return StateError(
            kind: .io(operation: operation, errno: code), path: path,
            reason: "\(operation) failed: \(name) (\(text))", hint: hint)
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }

    /// The symbolic name of the errno values a state volume commonly produces.
    static func errnoName(_ code: Int32) -> String {
        switch code {
        case ENOSPC: "ENOSPC"
        case EDQUOT: "EDQUOT"
        case EROFS: "EROFS"
        case EACCES: "EACCES"
        case EPERM: "EPERM"
        case EIO: "EIO"
        case ENOENT: "ENOENT"
        case ENOTDIR: "ENOTDIR"
        case EISDIR: "EISDIR"
        case EEXIST: "EEXIST"
        case EXDEV: "EXDEV"
        case EMLINK: "EMLINK"
        case EINVAL: "EINVAL"
        case EBADF: "EBADF"
        default: "errno \(code)"
        }
    }
}
