#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import Synchronization

// MARK: - Results and policy

/// What `state.on_corrupt` says to do when no usable checkpoint is left.
public enum OnCorrupt: String, Sendable, CaseIterable {
    /// Refuse to start; the operator inspects or restores the file.
    case fail
    /// Move the bad file(s) aside to `<name>.corrupt-<timestamp>` and start fresh.
    case reset
}

/// The outcome of restoring from the state directory.
public enum StateLoadResult: Sendable, Equatable {
    /// No checkpoint exists: a first start.
    case fresh
    /// The latest checkpoint was read and verified.
    case loaded(StateCheckpoint, path: String)
    /// The latest checkpoint was unusable (`skipped` says why) and the previous one was restored instead.
    /// Its offsets are older, so input after them is consumed again with the matching older state.
    case recovered(StateCheckpoint, path: String, skipped: StateError)
    /// `OnCorrupt.reset` moved the unusable checkpoint(s) to `quarantined` and the daemon starts fresh.
    case reset(after: StateError, quarantined: [String])

    /// The restored checkpoint, if any.
    public var checkpoint: StateCheckpoint? {
        switch self {
        case .loaded(let checkpoint, _), .recovered(let checkpoint, _, _): checkpoint
        case .fresh, .reset: nil
        }
    }
}

/// Receipt of one durable write.
public struct StateWriteReceipt: Sendable, Equatable {
    /// The checkpoint file now holding the state.
    public let path: String
    /// The sequence number written.
    public let sequence: UInt64
    /// File size in bytes.
    public let bytes: UInt64
    /// Time from opening the temp file to the directory `fsync`.
    public let duration: Duration
}

/// Counters and gauges for the metrics endpoint.
public struct StateStoreMetrics: Sendable, Equatable {
    /// Successful, durable writes.
    public var writes: Int = 0
    /// Failed writes (nothing to commit for them).
    public var writeFailures: Int = 0
    /// Duration of the last successful write, temp file to directory `fsync`.
    public var lastWriteDuration: Duration?
    /// Wall-clock time of the last successful write, milliseconds since the Unix epoch.
    public var lastWrittenAtMilliseconds: Int64?
    /// Size of the last checkpoint written.
    public var lastWrittenBytes: UInt64 = 0
    /// Bytes written by successful writes since start.
    public var totalBytesWritten: UInt64 = 0
    /// Sequence of the newest checkpoint written or restored.
    public var lastSequence: UInt64?
    /// The last write error, cleared by the next successful write.
    public var lastError: StateError?
    /// Times a restore fell back to the previous checkpoint or reset.
    public var restoreFallbacks: Int = 0

    /// Milliseconds since the last successful write, or nil before the first one.
    public func ageMilliseconds(nowMilliseconds: Int64) -> Int64? {
        lastWrittenAtMilliseconds.map { nowMilliseconds - $0 }
    }
}

// MARK: - StateStore

/// Durable checkpoints in one state directory, written atomically and verified on restore.
///
/// Files: `<fileName>` is the latest checkpoint, `<fileName>.prev` the one before it (kept so a damaged latest
/// can fall back, loudly), `<fileName>.tmp` a write in progress, `<fileName>.corrupt-<UTC time>` evidence moved
/// aside. Writing keeps the latest name present at every instant: the old latest is hard-linked to `.prev`
/// before the new one is renamed over it. An offset may be committed to Kafka only after `write` returns.
///
/// Thread-safe; writes and loads are serialized. Calls block on disk I/O: run them off the cooperative pool.
public final class StateStore: Sendable {
    /// The state directory.
    public let directory: String
    /// The latest checkpoint's path.
    public let latestPath: String
    /// The previous checkpoint's path.
    public let previousPath: String
    /// The in-progress write's path.
    public let temporaryPath: String

    private let io: any StateFileIO
    private let logger: Logger
    private let wallClockMilliseconds: @Sendable () -> Int64
    private let writer = Mutex(WriterState())
    private let metricsState = Mutex(StateStoreMetrics())

    private struct WriterState {
        /// True when the file at `latestPath` is known good (we wrote or verified it).
        var latestTrusted = false
        var lastSequence: UInt64?
    }

    /// Creates a store over `directory` (created on first write if missing).
    /// - Parameters:
    ///   - fileName: base name of the checkpoint files.
    ///   - io: the system-call seam; tests pass a fake that fails or "crashes" on demand.
    ///   - wallClockMilliseconds: the clock for `lastWrittenAt` and quarantine names.
    public init(
        directory: String,
        fileName: String = "state.ckpt",
        io: any StateFileIO = StatePOSIXFileIO(),
        logger: Logger = Logger(label: "distilld.state"),
        wallClockMilliseconds: @escaping @Sendable () -> Int64 = StateStore.systemMilliseconds
    ) {
        let base = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        self.directory = base
        self.latestPath = "\(base)/\(fileName)"
        self.previousPath = "\(base)/\(fileName).prev"
        self.temporaryPath = "\(base)/\(fileName).tmp"
        self.io = io
        self.logger = logger
        self.wallClockMilliseconds = wallClockMilliseconds
    }

    /// A snapshot of the counters.
    public var metrics: StateStoreMetrics { metricsState.withLock { $0 } }

    /// Duration of the last successful write.
    public var lastWriteDuration: Duration? { metrics.lastWriteDuration }

    /// Time of the last successful write, milliseconds since the Unix epoch.
    public var lastWrittenAtMilliseconds: Int64? { metrics.lastWrittenAtMilliseconds }

    /// The smallest sequence number `write` accepts next.
    public var nextSequence: UInt64 { writer.withLock { ($0.lastSequence ?? 0) + 1 } }

    /// `CLOCK_REALTIME` in milliseconds.
    @Sendable public static func systemMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    // MARK: - Write

    /// Makes `checkpoint` the latest durable checkpoint; the previous latest becomes `.prev`. `streaming` sections
    /// are encoded into the file as it is written, after the checkpoint's own sections.
    ///
    /// When this returns, file and directory entry are `fsync`ed and the checkpoint's offsets may be committed.
    /// When it throws, nothing may be committed; the previous checkpoint is still in place and loadable.
    /// - Throws: `StateError` (`state.no_space`, `state.read_only`, `state.permission_denied`, `state.io_failed`,
    ///   `state.sequence_not_increasing`, `state.invalid_checkpoint`).
    @discardableResult
    public func write(_ checkpoint: StateCheckpoint, streaming: [StateStreamedSection] = []) throws
        -> StateWriteReceipt {
        do {
            let (bytes, duration) = try writer.withLock { state in
                let start = ContinuousClock.now
                let bytes = try write(checkpoint, streaming: streaming, state: &state)
                return (bytes, ContinuousClock.now - start)
            }
            let receipt = StateWriteReceipt(
                path: latestPath, sequence: checkpoint.sequence, bytes: bytes, duration: duration)
            let now = wallClockMilliseconds()
            metricsState.withLock { metrics in
                metrics.writes += 1
                metrics.lastWriteDuration = receipt.duration
                metrics.lastWrittenAtMilliseconds = now
                metrics.lastWrittenBytes = bytes
                metrics.totalBytesWritten += bytes
                metrics.lastSequence = checkpoint.sequence
                metrics.lastError = nil
            }
            return receipt
        } catch let error as StateError {
            metricsState.withLock { metrics in
                metrics.writeFailures += 1
                metrics.lastError = error
            }
            // The caller reports it (with its own retry policy); logging here too would say it twice.
            throw error
        }
    }

    private func write(_ checkpoint: StateCheckpoint, streaming: [StateStreamedSection],
                       state: inout WriterState) throws -> UInt64 {
        if !state.latestTrusted, fileExists(latestPath) {
            try adoptExistingLatest(state: &state)
        }
        if let last = state.lastSequence, checkpoint.sequence <= last {
            throw StateError(
                kind: .sequenceNotIncreasing(last: last, attempted: checkpoint.sequence), path: latestPath,
                reason: "checkpoint sequence \(checkpoint.sequence) does not increase on \(last)",
                hint: "Take the sequence from StateStore.nextSequence; the previous checkpoint is intact.")
        }
        try checkpoint.validateForEncoding(path: latestPath, streaming: streaming)
        try ensureDirectory()
        return try StateAtomicFile.replace(
            path: latestPath, temporaryPath: temporaryPath, permissions: 0o644, io: io,
            body: { sink in try checkpoint.encode(into: &sink, streaming: streaming) },
            beforeRename: { try preservePrevious() },
            afterRename: {
                state.latestTrusted = true
                state.lastSequence = checkpoint.sequence
            })
    }

    /// A latest file this store neither wrote nor loaded (no `load()` before `write`, or a `.recovered` load):
    /// verify it once. A good one sets the sequence floor; a damaged one is moved aside, so it is never rotated
    /// over a good `.prev`.
    private func adoptExistingLatest(state: inout WriterState) throws {
        do {
            let existing = try readCheckpoint(at: latestPath)
            state.latestTrusted = true
            state.lastSequence = max(state.lastSequence ?? 0, existing.sequence)
        } catch let error as StateError where error.isCorruption {
            let moved = try quarantine(latestPath)
            logger.warning(
                "existing latest checkpoint is unusable; moved aside before writing",
                metadata: ["error": "\(error)", "moved_to": "\(moved)"])
        }
    }

    /// Keeps the current latest as `.prev` while leaving the latest name in place.
    private func preservePrevious() throws {
        guard fileExists(latestPath) else { return }
        let linkPath = previousPath + ".tmp"
        try? io.unlink(linkPath)
        do {
            try io.link(latestPath, linkPath)
            try StateAtomicFile.mapping(previousPath, "rename \(linkPath)") { try io.rename(linkPath, previousPath) }
        } catch let failure as StateIOFailure where Self.noHardLinks.contains(failure.errno) {
            // No hard links here: rename instead. A crash before the new latest lands leaves only `.prev`,
            // which `load` restores (and reports).
            try StateAtomicFile.mapping(previousPath, "rename \(latestPath)") {
                try io.rename(latestPath, previousPath)
            }
        } catch let failure as StateIOFailure {
            throw StateError.io(linkPath, operation: "link \(latestPath)", errno: failure.errno)
        }
    }

    /// errno values of `link(2)` that mean the file system has no hard links (vfat, some FUSE mounts).
    private static let noHardLinks: Set<Int32> = [EPERM, ENOTSUP, EOPNOTSUPP, ENOSYS, EMLINK]

    private func ensureDirectory() throws {
        guard !isDirectory(directory) else { return }
        var prefix = directory.hasPrefix("/") ? "" : "."
        for component in directory.split(separator: "/") {
            prefix += "/" + component
            guard !isDirectory(prefix) else { continue }
            do {
                try io.mkdir(prefix, mode: 0o755)
            } catch let failure as StateIOFailure {
                // EEXIST is fine only if a directory appeared meanwhile; a regular file there is ENOTDIR.
                let code = failure.errno == EEXIST ? (isDirectory(prefix) ? 0 : ENOTDIR) : failure.errno
                if code != 0 { throw StateError.io(prefix, operation: "create state directory", errno: code) }
                continue
            }
            try StateAtomicFile.mapping(prefix, "fsync parent directory") {
                try io.fsyncDirectory(StateAtomicFile.directoryOf(prefix))
            }
        }
    }

    // MARK: - Load

    /// Restores the newest verified checkpoint.
    ///
    /// Falls back to `.prev` when the latest is missing or corrupt and says so (`.recovered` and a warning log).
    /// - Throws: the latest checkpoint's `StateError` when nothing usable is left (corruption: `truncated`,
    ///   `checksumMismatch`, `badMagic`, `unsupportedVersion`, `malformedSection`, `trailingBytes`), or an I/O
    ///   error reading it (`state.permission_denied`, `state.io_failed`), which no policy overrides.
    public func load() throws -> StateLoadResult {
        let result = try writer.withLock { state in try load(state: &state) }
        if case .recovered(_, let path, let skipped) = result {
            metricsState.withLock { $0.restoreFallbacks += 1 }
            logger.warning(
                "latest checkpoint unusable; restored the previous one (older offsets, input is consumed again)",
                metadata: ["skipped": "\(skipped)", "restored": "\(path)"])
        }
        if let checkpoint = result.checkpoint {
            metricsState.withLock { $0.lastSequence = checkpoint.sequence }
        }
        return result
    }

    private enum FileOutcome {
        case absent
        case good(StateCheckpoint)
        case bad(StateError)
    }

    private func load(state: inout WriterState) throws -> StateLoadResult {
        state.latestTrusted = false
        state.lastSequence = nil
        switch try outcome(latestPath) {
        case .good(let checkpoint):
            state.latestTrusted = true
            state.lastSequence = checkpoint.sequence
            return .loaded(checkpoint, path: latestPath)
        case .absent:
            switch (try? outcome(previousPath)) ?? .absent {
            case .absent:
                return .fresh
            case .good(let checkpoint):
                state.lastSequence = checkpoint.sequence
                let missing = StateError(
                    kind: .missing, path: latestPath, reason: "latest checkpoint is missing",
                    hint: "A write was interrupted or the file was removed; the previous checkpoint is used.")
                return .recovered(checkpoint, path: previousPath, skipped: missing)
            case .bad(let error):
                throw error
            }
        case .bad(let error):
            let previous: FileOutcome
            do {
                previous = try outcome(previousPath)
            } catch let other as StateError {
                previous = .bad(other)
            }
            switch previous {
            case .good(let checkpoint):
                state.lastSequence = checkpoint.sequence
                return .recovered(checkpoint, path: previousPath, skipped: error)
            case .absent:
                throw error
            case .bad(let other):
                throw error.addingHint("The previous checkpoint \(previousPath) is unusable too: \(other.reason).")
            }
        }
    }

    /// Reads one file: absent, good, or corrupt; I/O errors other than ENOENT are thrown.
    private func outcome(_ path: String) throws -> FileOutcome {
        do {
            return .good(try readCheckpoint(at: path))
        } catch let error as StateError {
            if case .io(_, ENOENT) = error.kind { return .absent }
            if error.isCorruption { return .bad(error) }
            throw error
        }
    }

    /// Restores and applies `policy` when no usable checkpoint is left.
    ///
    /// - `.recovered`: the unusable latest is moved aside (so the next write does not rotate it over the good
    ///   `.prev`), under either policy, and the result is returned.
    /// - corruption with `.fail`: logs and rethrows the error.
    /// - corruption with `.reset`: moves the bad file(s) to `<name>.corrupt-<UTC time>`, logs a warning and
    ///   returns `.reset`, which the daemon treats as a fresh start.
    /// I/O errors (unreadable file or directory) are always thrown: they are not evidence of corruption.
    public func loadApplying(_ policy: OnCorrupt) throws -> StateLoadResult {
        let result: StateLoadResult
        do {
            result = try load()
        } catch let error as StateError where error.isCorruption {
            switch policy {
            case .fail:
                logger.error("checkpoint unusable and state.on_corrupt is fail", metadata: ["error": "\(error)"])
                throw error
            case .reset:
                let moved = try writer.withLock { state in
                    state.latestTrusted = false
                    state.lastSequence = nil
                    return try [latestPath, previousPath].filter(fileExists).map(quarantine)
                }
                metricsState.withLock { $0.restoreFallbacks += 1 }
                logger.warning(
                    "checkpoint unusable; state.on_corrupt is reset: starting fresh, bad files moved aside",
                    metadata: ["error": "\(error)", "moved_to": "\(moved.joined(separator: ", "))"])
                return .reset(after: error, quarantined: moved)
            }
        }
        if case .recovered(_, _, let skipped) = result, skipped.kind != .missing {
            let moved = try writer.withLock { _ in fileExists(latestPath) ? try quarantine(latestPath) : nil }
            if let moved {
                logger.warning("unusable latest checkpoint moved aside", metadata: ["moved_to": "\(moved)"])
            }
        }
        return result
    }

    // MARK: - Files

    /// Renames `path` to `<path>.corrupt-<UTC time>` (plus `-N` if taken); evidence is never deleted.
    private func quarantine(_ path: String) throws -> String {
        let stamp = Self.utcStamp(milliseconds: wallClockMilliseconds())
        var target = "\(path).corrupt-\(stamp)"
        var attempt = 1
        while fileExists(target) {
            attempt += 1
            target = "\(path).corrupt-\(stamp)-\(attempt)"
        }
        try StateAtomicFile.mapping(path, "move aside to \(target)") { try io.rename(path, target) }
        try StateAtomicFile.mapping(directory, "fsync directory") { try io.fsyncDirectory(directory) }
        return target
    }

    /// `20261123T132152.123Z`
    static func utcStamp(milliseconds: Int64) -> String {
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return pad(parts.tm_year + 1900, 4) + pad(parts.tm_mon + 1, 2) + pad(parts.tm_mday, 2) + "T"
            + pad(parts.tm_hour, 2) + pad(parts.tm_min, 2) + pad(parts.tm_sec, 2) + "."
            + pad(Int32(milliseconds % 1000), 3) + "Z"
    }

    private func fileExists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    private func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }
}
