import Foundation

// MARK: - BenchAffinity

/// One core for the pipeline, as issue 6 states its targets: the measured `distilld run` child (its loop, librdkafka's
/// threads, the checkpoint thread) runs on the last usable CPU, and the benchmark (feeder, output reader) and the
/// broker on the others. Unpinned, the feeder's JSON generation and compression and the broker took CPU from the
/// daemon on a 2-core machine, most of all in the latency phase, so "half the measured rate" was not half of anything.
///
/// The raw consume baseline and `decode` get the same core: their consume loop runs on a thread of its own pinned
/// there (`pinCurrentThread`), which creates the consumer, so librdkafka's threads inherit the CPU; the feeder and
/// the broker stay on the others. A ratio against raw consume then compares one core with one core.
struct BenchAffinity: Sendable {
    /// The CPU of the measured daemon.
    let pipelineCPU: Int
    /// The CPUs of everything else.
    let otherCPUs: [Int]
    /// The `taskset` that starts the daemon on `pipelineCPU` (util-linux).
    let taskset: String

    /// The plan for this machine, or nil (and why) when pinning is impossible: fewer than two usable CPUs, or no
    /// `taskset`.
    static func plan() -> (BenchAffinity?, why: String?) {
        let cpus = usableCPUs()
        guard cpus.count >= 2 else { return (nil, "fewer than 2 usable CPUs") }
        guard let taskset = ["/usr/bin/taskset", "/bin/taskset"].first(where: FileManager.default.isExecutableFile)
        else { return (nil, "taskset (util-linux) not found") }
        return (BenchAffinity(pipelineCPU: cpus.last!, otherCPUs: Array(cpus.dropLast()), taskset: taskset), nil)
    }

    /// "pipeline and consume loops on CPU 1, the benchmark and the broker on CPU 0".
    var description: String {
        "pipeline and consume loops on CPU \(pipelineCPU), the benchmark and the broker on CPU "
            + otherCPUs.map(String.init).joined(separator: ",")
    }

    /// The executable and arguments that run `executable arguments` on the pipeline's CPU.
    func pipelineCommand(_ executable: String, _ arguments: [String]) -> (String, [String]) {
        (taskset, ["-c", "\(pipelineCPU)", executable] + arguments)
    }

    /// Moves every thread of process `pid` (this process by default) to `otherCPUs` (`taskset -a -p`). Threads created
    /// later inherit their creator's mask, so the process stays there.
    func pinElsewhere(pid: Int32 = getpid()) throws {
        let status = try runTaskset(["-a", "-p", "-c", otherCPUs.map(String.init).joined(separator: ","), "\(pid)"])
        guard status == 0 else {
            throw BenchError.invalidOption("`\(taskset) -a -p` could not pin process \(pid) (status \(status))")
        }
    }

    /// Pins the calling thread to `pipelineCPU` (`taskset -p` of its thread id; glibc's `sched_setaffinity` does not
    /// import into Swift). Threads it creates afterwards inherit the CPU.
    func pinCurrentThread() throws {
        // "/proc/thread-self" links to "<pid>/task/<tid>".
        guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self"),
              let tid = link.split(separator: "/").last.flatMap({ Int32($0) }) else {
            throw BenchError.invalidOption("cannot tell this thread's id from /proc/thread-self")
        }
        let status = try runTaskset(["-p", "-c", "\(pipelineCPU)", "\(tid)"])
        guard status == 0, Self.currentThreadCPUs() == [pipelineCPU] else {
            throw BenchError.invalidOption("`\(taskset) -p` could not pin thread \(tid) to CPU \(pipelineCPU)")
        }
    }

    /// Runs `taskset` with `arguments`, silently; returns its exit status.
    private func runTaskset(_ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: taskset)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// The CPUs the calling thread may run on.
    static func currentThreadCPUs() -> [Int] { allowedCPUs(status: "/proc/thread-self/status") }

    /// The CPUs this process may run on, ascending.
    static func usableCPUs() -> [Int] { allowedCPUs(status: "/proc/self/status") }

    /// `Cpus_allowed_list` of a `/proc` status file (e.g. "0-3,6"), ascending; empty where it cannot be read.
    static func allowedCPUs(status path: String) -> [Int] {
        guard let status = try? String(contentsOfFile: path, encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
        else { return [] }
        return parseCPUList(line.dropFirst("Cpus_allowed_list:".count))
    }

    /// The CPUs of a kernel CPU list ("0-3,6"), ascending.
    static func parseCPUList<S: StringProtocol>(_ list: S) -> [Int] {
        var cpus: [Int] = []
        for part in list.split(separator: ",") {
            let bounds = part.split(separator: "-").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            if bounds.count == 1 { cpus.append(bounds[0]) }
            if bounds.count == 2, bounds[0] <= bounds[1] { cpus += Array(bounds[0]...bounds[1]) }
        }
        return cpus.sorted()
    }
}

// MARK: - CPUTimes

/// Per-CPU time counters of `/proc/stat`, to tell how busy each CPU was during a phase.
enum CPUTimes {
    /// `cpuN` → (busy, total) jiffies; empty where `/proc/stat` cannot be read.
    static func read() -> [String: (busy: UInt64, total: UInt64)] {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return [:] }
        var out: [String: (busy: UInt64, total: UInt64)] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("cpu") {
            let fields = line.split(separator: " ")
            // "cpu" alone is the sum of all; idle and iowait are fields 4 and 5.
            guard fields.count > 5, fields[0] != "cpu" else { continue }
            let values = fields.dropFirst().compactMap { UInt64($0) }
            guard values.count >= 5 else { continue }
            let total = values.reduce(0, +)
            out[String(fields[0])] = (total - values[3] - values[4], total)
        }
        return out
    }

    /// Busy percent of each CPU between two readings (nil without readings).
    static func busyPercent(from a: [String: (busy: UInt64, total: UInt64)],
                            to b: [String: (busy: UInt64, total: UInt64)]) -> [String: Double]? {
        var out: [String: Double] = [:]
        for (cpu, end) in b {
            guard let start = a[cpu], end.total > start.total, end.busy >= start.busy else { continue }
            out[cpu] = 100 * Double(end.busy - start.busy) / Double(end.total - start.total)
        }
        return out.isEmpty ? nil : out
    }
}
