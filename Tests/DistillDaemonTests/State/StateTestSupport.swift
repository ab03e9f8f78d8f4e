import DistillDaemon
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Temp directories

/// A fresh directory under the system temp dir, removed by `remove()`.
struct StateTempDirectory {
    let path: String

    init(_ label: String = "state") throws {
        var template = Array("\(NSTemporaryDirectory())distilld-\(label)-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw StateIOFailure(errno: errno)
        }
        path = String(cString: made)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Runs `body` with a temp directory that is removed afterwards.
func withStateTempDirectory<T>(_ label: String = "state", _ body: (StateTempDirectory) throws -> T) throws -> T {
    let directory = try StateTempDirectory(label)
    defer { directory.remove() }
    return try body(directory)
}

// MARK: - File helpers

func stateReadFile(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

func stateWriteFile(_ bytes: [UInt8], _ path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func stateFileExists(_ path: String) -> Bool {
    FileManager.default.fileExists(atPath: path)
}

func stateListing(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
}

// MARK: - Sample checkpoints

/// A small checkpoint whose every field depends on `sequence`, so a mix of two would be visible.
func stateSampleCheckpoint(sequence: UInt64, sectionSize: Int = 64) -> StateCheckpoint {
    let seed = UInt8(truncatingIfNeeded: sequence &* 37)
    return StateCheckpoint(
        sequence: sequence,
        createdAtMilliseconds: 1_700_000_000_000 + Int64(sequence),
        configRevision: "rev-\(sequence)",
        writerVersion: "distilld 0.1.0",
        offsets: [
            StateTopicPartition(topic: "samples", partition: 0): 100 * Int64(sequence),
            StateTopicPartition(topic: "samples", partition: 1): 100 * Int64(sequence) + 7,
            StateTopicPartition(topic: "labels", partition: 0): 3 * Int64(sequence),
        ],
        sections: [
            StateSection(name: "windows", bytes: (0..<sectionSize).map { UInt8(truncatingIfNeeded: $0) &+ seed }),
            StateSection(name: "student.weights", bytes: [UInt8](repeating: seed, count: sectionSize / 2)),
            StateSection(name: "empty", bytes: []),
        ])
}

/// Assembles a file image around `payload` with a correct CRC, to craft well-checksummed but bad payloads.
func stateCheckpointFile(version: UInt32 = 1, payload: [UInt8]) -> [UInt8] {
    var bytes = Array("DSTLCKPT".utf8)
    bytes += stateLE(version)
    bytes += stateLE(UInt64(payload.count))
    bytes += payload
    bytes += stateLE(StateCRC32C.checksum(bytes))
    return bytes
}

func stateLE<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

func stateLEString(_ string: String) -> [UInt8] {
    stateLE(UInt32(string.utf8.count)) + Array(string.utf8)
}

// MARK: - Fault-injecting file I/O

/// Raised by `StateFaultyFileIO` when its planned crash point is reached; nothing after it touches the disk.
struct StateSimulatedCrash: Error {}

/// Delegates to the real system calls, except that it can fail writes with an errno after a byte budget,
/// fail a chosen call kind with an errno, cap every write to a few bytes, or "crash" before call number N:
/// from then on every call throws `StateSimulatedCrash`, so no cleanup code runs, as after `kill -9`.
/// With `powerLoss`, `reap()` also cuts every file written since its last `fsync` to half its size, as a power
/// cut can lose page-cache data (whatever name the file has by then).
final class StateFaultyFileIO: StateFileIO {
    struct Plan {
        var writeBudget: Int?
        var budgetErrno: Int32 = ENOSPC
        var failCall: String?
        var failCallErrno: Int32 = EIO
        var crashBeforeCall: Int?
        var maximumWriteChunk: Int?
        var powerLoss = false
    }

    private struct Log {
        var calls: [String] = []
        var bytesWritten = 0
        var crashed = false
        var openDescriptors: Set<Int32> = []
        /// Inodes written since their last fsync, with the directory they live in.
        var unsynced: [UInt64: String] = [:]
        var directories: [Int32: String] = [:]
    }

    private let plan: Plan
    private let real = StatePOSIXFileIO()
    private let log = Mutex(Log())

    init(_ plan: Plan) {
        self.plan = plan
    }

    /// The call names made so far, in order (`open`, `write`, `fsync`, ...).
    var calls: [String] { log.withLock { $0.calls } }

    var crashed: Bool { log.withLock { $0.crashed } }

    /// Closes descriptors left open by a simulated crash, as the kernel would at process exit, and applies
    /// the power loss if planned.
    func reap() {
        let (open, unsynced, crashed) = log.withLock { log in
            defer { log.openDescriptors = [] }
            return (log.openDescriptors, log.unsynced, log.crashed)
        }
        for fd in open { try? real.close(fd) }
        guard plan.powerLoss, crashed else { return }
        for (inode, directory) in unsynced {
            for name in stateListing(directory) {
                var info = stat()
                let path = "\(directory)/\(name)"
                if lstat(path, &info) == 0, UInt64(info.st_ino) == inode { truncate(path, info.st_size / 2) }
            }
        }
    }

    private static func inode(_ fd: Int32) -> UInt64? {
        var info = stat()
        return fstat(fd, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    private func enter(_ name: String) throws {
        try log.withLock { log in
            if log.crashed { throw StateSimulatedCrash() }
            if let crashAt = plan.crashBeforeCall, log.calls.count >= crashAt {
                log.crashed = true
                throw StateSimulatedCrash()
            }
            log.calls.append(name)
        }
        if plan.failCall == name { throw StateIOFailure(errno: plan.failCallErrno) }
    }

    func open(_ path: String, flags: Int32, mode: mode_t) throws -> Int32 {
        try enter("open")
        let fd = try real.open(path, flags: flags, mode: mode)
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        log.withLock { log in
            log.openDescriptors.insert(fd)
            log.directories[fd] = directory
        }
        return fd
    }

    func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws -> Int {
        try enter("write")
        var count = min(bytes.count, plan.maximumWriteChunk ?? bytes.count)
        if let budget = plan.writeBudget {
            let left = budget - log.withLock { $0.bytesWritten }
            if left <= 0 { throw StateIOFailure(errno: plan.budgetErrno) }
            count = min(count, left)
        }
        let written = try real.write(fd, UnsafeRawBufferPointer(rebasing: bytes[0..<count]))
        let inode = Self.inode(fd)
        log.withLock { log in
            log.bytesWritten += written
            if let inode { log.unsynced[inode] = log.directories[fd] }
        }
        return written
    }

    /// An overwrite does not grow the file, so it does not spend the write budget (`failCall: "pwrite"` fails it).
    func pwrite(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws -> Int {
        try enter("pwrite")
        let count = min(bytes.count, plan.maximumWriteChunk ?? bytes.count)
        let written = try real.pwrite(fd, UnsafeRawBufferPointer(rebasing: bytes[0..<count]), at: offset)
        if let inode = Self.inode(fd) { log.withLock { $0.unsynced[inode] = $0.directories[fd] } }
        return written
    }

    func fsync(_ fd: Int32) throws {
        try enter("fsync")
        try real.fsync(fd)
        if let inode = Self.inode(fd) { log.withLock { _ = $0.unsynced.removeValue(forKey: inode) } }
    }

    func close(_ fd: Int32) throws {
        try enter("close")
        log.withLock { _ = $0.openDescriptors.remove(fd) }
        try real.close(fd)
    }

    func rename(_ source: String, _ destination: String) throws {
        try enter("rename")
        try real.rename(source, destination)
    }

    func link(_ source: String, _ destination: String) throws {
        try enter("link")
        try real.link(source, destination)
    }

    func unlink(_ path: String) throws {
        try enter("unlink")
        try real.unlink(path)
    }

    func mkdir(_ path: String, mode: mode_t) throws {
        try enter("mkdir")
        try real.mkdir(path, mode: mode)
    }

    func fsyncDirectory(_ path: String) throws {
        try enter("fsyncDirectory")
        try real.fsyncDirectory(path)
    }
}
