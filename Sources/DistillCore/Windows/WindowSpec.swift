// MARK: - Window configuration

/// Errors from validating statistics, window, trigger or calibration configuration.
public struct DistillConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Dotted path of the offending setting, e.g. `windows.fast.slide`.
    public var setting: String
    /// What is wrong and what to do.
    public var message: String

    /// Creates a configuration error.
    public init(setting: String, message: String) {
        self.setting = setting
        self.message = message
    }

    /// `setting: message`.
    public var description: String { "\(setting): \(message)" }
}

/// A named window: event-time sliding (size, slide, grace) or count-based (last N samples).
public struct WindowSpec: Sendable, Codable, Equatable, Hashable {
    /// How the window is bounded.
    public enum Kind: Sendable, Codable, Equatable, Hashable {
        /// Event-time sliding window; all values in milliseconds. A window [end − size, end) closes once the
        /// watermark (max event time − grace) reaches `end`; ends are multiples of `slide`.
        case eventTime(sizeMillis: Int64, slideMillis: Int64, graceMillis: Int64)
        /// The last `size` samples, emitted every `slide` samples (`size` a multiple of `slide`).
        case count(size: Int, slide: Int)
    }

    /// Name used in config, decisions and outputs (e.g. `fast`, `drift`).
    public var name: String
    /// The window's bounds.
    public var kind: Kind

    /// Creates a window spec.
    public init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }

    /// An event-time window given in milliseconds.
    public static func eventTime(_ name: String, size: Int64, slide: Int64, grace: Int64 = 0) -> WindowSpec {
        WindowSpec(name: name, kind: .eventTime(sizeMillis: size, slideMillis: slide, graceMillis: grace))
    }

    /// A count window of the last `size` samples, emitted every `slide` samples.
    public static func count(_ name: String, size: Int, slide: Int) -> WindowSpec {
        WindowSpec(name: name, kind: .count(size: size, slide: slide))
    }

    /// Milliseconds in an hour.
    public static let hour: Int64 = 3_600_000
    /// Milliseconds in a minute.
    public static let minute: Int64 = 60_000
    /// Milliseconds in a day.
    public static let day: Int64 = 86_400_000

    /// Default `fast` window: 1 h, sliding every 1 min, 1 min grace.
    public static let fast = WindowSpec.eventTime("fast", size: hour, slide: minute, grace: minute)
    /// Default `drift` window: 14 d, sliding every 1 h, 5 min grace.
    public static let drift = WindowSpec.eventTime("drift", size: 14 * day, slide: hour, grace: 5 * minute)

    /// Checks the spec; throws `DistillConfigError` naming the setting.
    public func validate() throws(DistillConfigError) {
        if name.isEmpty { throw DistillConfigError(setting: "windows", message: "window name must be non-empty") }
        switch kind {
        case let .eventTime(size, slide, grace):
            if slide <= 0 { throw DistillConfigError(setting: "windows.\(name).slide", message: "must be > 0") }
            if size < slide {
                throw DistillConfigError(setting: "windows.\(name).size", message: "must be >= slide")
            }
            if grace < 0 { throw DistillConfigError(setting: "windows.\(name).grace", message: "must be >= 0") }
            if size / gcd(size, slide) > 100_000 {
                throw DistillConfigError(setting: "windows.\(name).size",
                                         message: "needs more than 100000 panes; use a coarser slide")
            }
        case let .count(size, slide):
            if slide <= 0 { throw DistillConfigError(setting: "windows.\(name).slide", message: "must be > 0") }
            if size < slide || size % slide != 0 {
                throw DistillConfigError(setting: "windows.\(name).size", message: "must be a multiple of slide")
            }
        }
    }
}

/// Greatest common divisor of two positive integers.
@inlinable
func gcd(_ a: Int64, _ b: Int64) -> Int64 {
    var x = a, y = b
    while y != 0 { (x, y) = (y, x % y) }
    return x
}

/// Floor division for Int64 (rounds toward −∞).
@inlinable
func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

/// Ceiling division for Int64 (rounds toward +∞).
@inlinable
func ceilDiv(_ a: Int64, _ b: Int64) -> Int64 {
    -floorDiv(-a, b)
}
