import Foundation

// MARK: - BenchMemory

/// Resident set size from `/proc/<pid>/status` (Linux), of this process or another. Elsewhere every figure is nil.
enum BenchMemory {
    /// Current RSS (`VmRSS`), bytes.
    static var residentBytes: Int? { statusField("VmRSS:") }

    /// Peak RSS since start or since the last ``resetPeak()`` (`VmHWM`), bytes.
    static var peakBytes: Int? { statusField("VmHWM:") }

    /// Current and peak RSS (`VmRSS`, `VmHWM`) of process `pid`, bytes; nil once it has exited.
    static func resident(of pid: Int32) -> (current: Int, peak: Int)? {
        let path = "/proc/\(pid)/status"
        guard let current = statusField("VmRSS:", path: path), let peak = statusField("VmHWM:", path: path) else {
            return nil
        }
        return (current, peak)
    }

    /// Resets `VmHWM` to the current RSS (`echo 5 > /proc/self/clear_refs`, Linux ≥ 4.0), so each measured
    /// configuration gets its own peak. Returns false where that is not possible.
    @discardableResult
    static func resetPeak() -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? handle.close() }
        do {
            try handle.write(contentsOf: Data("5".utf8))
            return true
        } catch {
            return false
        }
    }

    /// A `kB` line of `/proc/self/status`, in bytes.
    private static func statusField(_ name: String, path: String = "/proc/self/status") -> Int? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let digits = line.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first
            return digits.flatMap { Int($0) }.map { $0 * 1024 }
        }
        return nil
    }
}
